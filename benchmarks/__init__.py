"""Benchmarks and the synthetic image writer used by the demo, tests and benchmarks."""
