"""Benchmarks (scripts, not timed tests)."""
