"""Benchmarks: `make bench`. Everything on 127.0.0.1; each script stops what it starts."""
