"""Local development stack: fake upstream services and helpers used by dev runs and tests."""
