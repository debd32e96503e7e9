"""Benchmarks: `python -m bench` starts the local stack, the service as the Procfile starts it and
the original design's baseline beside it, drives load from a separate load generator process over
loopback, and prints every figure side by side (see bench/__main__.py)."""
