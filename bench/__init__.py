"""Benchmarks: `make bench` prints a table of figures per issue target."""
