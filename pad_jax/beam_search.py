"""Gin-facing name of pad-jax's beam search (`pad_jax.decoding.beam_search`).

Kept for run gin files and saved `config.gin` files that select
`--gin.DECODE_FN=@beam_search.beam_search` after `from pad_jax import
beam_search`. New code imports `pad_jax.decoding.beam_search`.
"""

from pad_jax.decoding.beam_search import beam_search

__all__ = ["beam_search"]
