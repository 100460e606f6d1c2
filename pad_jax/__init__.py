"""pad-jax: Program-aided Distillation on JAX and t5x."""

__version__ = "0.1.0"
