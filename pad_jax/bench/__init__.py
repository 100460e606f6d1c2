"""Benchmarks run with `python -m pad_jax.bench <name> [flags]` (see __main__)."""
