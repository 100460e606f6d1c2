"""Gin-facing name of the student network (implemented in `pad_jax.student.network`).

Model gin files and the `config.gin` that t5x saves in every MODEL_DIR written
before the `pad_jax.student` package say `from pad_jax import network` and
bind `network.Transformer` / `network.T5Config`; gin's dynamic registration
resolves a name to its object, so these are the same configurables as
`pad_jax.student.network`'s. New code imports `pad_jax.student.network`.
"""

from pad_jax.student.network import T5Config
from pad_jax.student.network import Transformer

__all__ = ["T5Config", "Transformer"]
