"""Benchmarks (not part of the test suite); a regular package so `python -m benchmarks.run` finds
this folder before the top-level `benchmarks` package that pysbd installs."""
