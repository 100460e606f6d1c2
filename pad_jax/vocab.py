"""Gin-facing name of the CodeT5 vocabulary (`pad_jax.student.vocab`).

Kept for gin files and saved `config.gin` files that bind
`@pad_jax.vocab.CodeT5Vocabulary()`. New code imports `pad_jax.student.vocab`.
"""

from pad_jax.student.vocab import CodeT5Vocabulary

__all__ = ["CodeT5Vocabulary"]
