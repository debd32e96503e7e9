"""The REST door: direct callers, health and readiness."""
