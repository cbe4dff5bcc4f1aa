"""Benchmarks: measurements, not tests.  Run from the repository root as ``python -m bench.NAME``."""
