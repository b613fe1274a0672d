"""Reproducible benchmark suites; results are committed under benchmarks/results/."""
