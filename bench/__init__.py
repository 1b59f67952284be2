"""Benchmarks: `make bench` runs every `bench/<name>_bench.py` and prints its figures."""
