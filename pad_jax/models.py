"""Gin-facing name of the student's t5x model class (`pad_jax.student.models`).

Kept for gin files and saved `config.gin` files that say
`from pad_jax import models as pad_models`. New code imports
`pad_jax.student.models`.
"""

from pad_jax.student.models import EncoderDecoderModel

__all__ = ["EncoderDecoderModel"]
