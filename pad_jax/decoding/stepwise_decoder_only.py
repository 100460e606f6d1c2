"""Step-wise decoding of a decoder-only student: the prompt leads every row.

`stepwise_decoder.LineDecoder` drives a model through four methods
(`decoding_context`, `decoding_context_rows`, `decoding_cache`,
`decode_ids`; pad-jax's `EncoderDecoderModel` has them). A decoder-only
student (t5x's `DecoderOnlyModel`, e.g. over
`pad_jax.student.decoder_network`) has no encoder: `DecoderOnlySteps` gives
it the same four methods, with

* no context: `decoding_context` is empty. The question is read as the
  decoder-only `Decoder` reads it (BOS, then
  `tasks.decoder_tasks.prompt_text(question)`'s ids), as the first ids of
  every row of the question (`stepwise_proposer.Session` puts them there),
  so each row is BOS + prompt + program, contiguous from position 0, as in
  t5x's `predict_batch`;
* the cache of the model's own `decode=True` call (`decoding_cache`: its
  keys/values and its per-row `cache_index`, all zero), and its own cached
  step (`decode_ids`: t5x's `_compute_logits_from_slice`, one id per row).

The line decoder's one-write-position scheme then applies unchanged: a call
starts at the shortest row's length and every row feeds its own ids again
from there (the per-row `cache_index` is set to that position,
`stepwise_decoder._restart`). The prompt is fed id by id in the first call
(t5x prefills it in one call: the same attention, summed in another order),
and later calls feed again the spread of the rows' lengths, which now
includes the prompt-length differences between the questions of a batch.

A prefix LM (`inputs_bidirectional_attention=True`: the prompt attends to
itself both ways) cannot be decoded one id at a time; it is refused.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from t5x import decoding
from t5x import models

PyTree = Any


def is_decoder_only(model: Any) -> bool:
  """Whether `model` is a t5x `DecoderOnlyModel` (or its adapter here)."""
  return isinstance(model, (models.DecoderOnlyModel, DecoderOnlySteps))


def is_prefix_lm(model: models.DecoderOnlyModel) -> bool:
  """Whether the prompt attends to itself both ways, which step-wise decoding
  (one id at a time) cannot do: `inputs_bidirectional_attention`."""
  # No public accessor; t5x's own predict_batch reads it the same way.
  return bool(model._inputs_bidirectional_attention)  # pylint: disable=protected-access


class DecoderOnlySteps:
  """A `DecoderOnlyModel` seen through the line decoder's four methods.

  Args:
    model: a t5x `DecoderOnlyModel` whose module takes t5x's decode calls
      (`decode=True` with `mutable=['cache']`).

  Raises:
    ValueError: the model is a prefix LM (`inputs_bidirectional_attention`).
  """

  def __init__(self, model: models.DecoderOnlyModel):
    if is_prefix_lm(model):
      raise ValueError("step-wise decoding feeds the prompt one id at a time: "
                       "a prefix LM (inputs_bidirectional_attention=True) "
                       "cannot be decoded step-wise")
    self.model, self.module = model, model.module

  def decoding_context(self, params: PyTree, encoder_input_tokens: jnp.ndarray,
                       rows_per_input: int) -> PyTree:
    """Nothing: the prompt is fed as the rows' first ids."""
    del params, encoder_input_tokens, rows_per_input
    return {}

  def decoding_context_rows(self, context: PyTree, rows: jnp.ndarray,
                            total_rows: int) -> PyTree:
    """Nothing, for any rows (see `decoding_context`)."""
    del rows, total_rows
    return context

  def decoding_cache(self, params: PyTree, rows: int, input_length: int,
                     max_decode_length: int) -> PyTree:
    """An empty (all-zero) cache: `rows` rows, `max_decode_length` positions.

    The shapes of the cache the module's first `decode=True` call creates
    (as t5x's `_compute_kv_cache` makes it before prefilling); `input_length`
    is unused (the prompt is counted in `max_decode_length`).
    """
    del input_length
    ones = jnp.ones((rows, max_decode_length), jnp.int32)
    shapes = jax.eval_shape(
        lambda p: self.module.apply({"params": p}, ones, ones,
                                    enable_dropout=False, decode=True,
                                    mutable=["cache"])[1]["cache"], params)
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                  shapes)

  def decode_ids(self, params: PyTree, cache: PyTree, context: PyTree,
                 ids: jnp.ndarray, max_decode_length: int
                 ) -> tuple[jnp.ndarray, PyTree]:
    """One cached step (t5x's `_compute_logits_from_slice`): `[rows, 1]` ids.

    Each row's id is written at its `cache_index` and attends to the
    positions before it.

    Returns:
      (logits `[rows, vocab]`, the updated cache).
    """
    del context
    state = decoding.DecodingState(cur_index=None, sequences=None,
                                   cur_token=ids, cache=cache)
    return self.model._compute_logits_from_slice(  # pylint: disable=protected-access
        state, params, max_decode_length)
