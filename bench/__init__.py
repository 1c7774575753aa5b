"""Benchmarks (`make bench` = `python -m bench.run_all`); results go to docs/benchmarks.md."""
