"""Benchmarks: scripts that start the local stack and the service as the Procfile does, drive
load from this process over loopback, and print their figures."""
