"""Benchmarks: each prints its figures (medians)."""
