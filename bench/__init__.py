"""Benchmarks: `python -m bench NAME` (or `all`), from the project's venv.

Each benchmark measures our code beside a peer or a physical limit in the
same run and prints the ratio; docs/performance.md keeps the results.
"""
