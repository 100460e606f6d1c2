"""t5x's beam search; beams reordered by direct gathers or not moved at all.

`beam_search` has the signature, arguments and results of t5x's
`decoding.beam_search` (same ids; same scores up to float rounding, see
below) and is meant to be passed as a model's `decode_fn`. The loop is
t5x's, copied from `t5x/decoding.py` (Copyright 2024 The T5X Authors,
Apache License 2.0) with three changes, all about memory traffic per step:

* beams are reordered by direct index gathers (`one_hot=False` in t5x's
  terms) instead of t5x's default one-hot contractions, which read every
  beam of every cache array (and on GPU may run the contraction at reduced
  float precision);
* the decoding cache is carried flat, `[batch * beams, ...]` (t5x carries
  `[batch, beams, ...]` and reshapes twice per step), and reordered with one
  `jnp.take` over flat row indices;
* a cache layer that holds an `ANCESTORS` table (`pad_jax.student.network`'s
  self-attention does) is not reordered at all: row `b * beams + m` keeps
  what beam `m` of input `b` wrote at each step, the table
  (`[batch, beams, length]` ints, `[b, i, k] = m`: position `k` of beam
  `i`'s sequence is in row `m`) is what moves, and the network reads
  through it (`attention.ancestor_attention`). Reordering 12 arrays of
  `[32, 8, 256, 64]` floats at CodeT5-small batch 8 x 4 beams wrote
  ~0.4 GB per step (the gather and the loop-carry copy XLA adds after
  it); the tables are 32 KB each. The network gets the table one beam
  wide (`[batch, 1, length]`, its own row) from every other decode
  function, t5x's beam search included, which reorders table and cache
  alike. Scores then differ from t5x's in float rounding only (the
  attention sums run in another order), which could reorder beams only at
  a near tie; the tests and the decode benchmark see the same ids.

Every other step (top-2k candidates, prompt forcing, finished-set update,
termination test, final left-alignment) is t5x's code, and t5x's helpers
(`brevity_penalty`, prompt alignment) are called, not copied; the top-2k
candidates come from `lax.top_k` instead of t5x's `top_k_two_stage` (same
results; its two stages fill TPU lanes and take twice the CPU time). Its pad-jax users: `pad_jax.infer` (`--decode=beam`) and the decode
benchmark (`python -m pad_jax.bench decode --decode=beam`).
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping, Optional, Tuple

import flax
from flax import traverse_util
import jax
from jax import lax
import jax.numpy as jnp
from t5x import decoding

# A cache leaf by this name, `[batch, 1, length]` int32 as the network
# shapes it, marks the arrays beside it (its layer's keys and values) as
# addressed through it; see `_expand_cache` and `_reorder_cache`.
from pad_jax.student.attention import ANCESTORS  # pylint: disable=g-importing-member

NEG_INF = decoding.NEG_INF

# Leaves t5x's `decoding.cache_map` leaves alone (scalars, shared biases).
_NOT_PER_ROW = ('cache_index', 'cached_bias', 'position_embedder_index')


def _gather(x: jnp.ndarray, beam_indices: jnp.ndarray) -> jnp.ndarray:
  """`x[b, beam_indices[b, e]]` for `x: [batch, old_beams, ...]`."""
  idx = beam_indices.reshape(beam_indices.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, idx, axis=1)


def _gather_topk(nested, score_or_log_prob: jnp.ndarray, k: int):
  """t5x's `gather_topk_beams` with direct gathers."""
  _, topk_indices = lax.top_k(score_or_log_prob, k=k)
  topk_indices = jnp.flip(topk_indices, axis=1)
  return jax.tree.map(lambda x: _gather(x, topk_indices), nested)


def _map_rows(fn_rows, fn_ancestors, cache, cache_offset: int,
              apply_to_index: bool = False, keep_tabled: bool = False):
  """`decoding.cache_map` that tells the ancestors tables and their layers.

  `fn_rows` maps every per-row leaf, `fn_ancestors` each `ANCESTORS` table;
  with `keep_tabled`, the other leaves of a layer with a table are kept as
  they are. Tables count only at `cache_offset` 0 (a scanned-layers cache
  is mapped row by row, tables too).
  """
  frozen = isinstance(cache, flax.core.FrozenDict)
  flat = traverse_util.flatten_dict(
      flax.core.unfreeze(cache) if frozen else cache)
  tables = set()
  if cache_offset == 0:
    tables = {path[:-1] for path in flat if path[-1] == ANCESTORS}
  out = {}
  for path, x in flat.items():
    if apply_to_index and path[-1] == 'cache_index':
      out[path] = fn_rows(x)
    elif path[-1] in _NOT_PER_ROW:
      out[path] = x
    elif path[:-1] in tables and path[-1] == ANCESTORS:
      out[path] = fn_ancestors(x)
    elif path[:-1] in tables and keep_tabled:
      out[path] = x
    else:
      out[path] = fn_rows(x)
  out = traverse_util.unflatten_dict(out)
  return flax.core.freeze(out) if frozen else out


def beam_search(
    inputs: jnp.ndarray,
    cache: Mapping[str, jnp.ndarray],
    tokens_to_logits: Callable[
        [decoding.DecodingState], Tuple[jnp.ndarray, Mapping[str, jnp.ndarray]]
    ],
    eos_id: int,
    num_decodes: int = 4,
    alpha: float = 0.6,
    max_decode_len: Optional[int] = None,
    max_decode_step: int = -1,
    min_log_prob: float = decoding.NEG_INF_VALUE,
    decode_rng: Optional[jnp.ndarray] = None,
    cache_offset: int = 0,
    initial_index: Optional[jnp.ndarray] = None,
) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """t5x's `decoding.beam_search` (same arguments and results).

  Returns:
    `[batch_size, num_decodes, max_decode_len]` sequences, best last, and
    their `[batch_size, num_decodes]` scores.
  """
  del decode_rng
  assert cache_offset in (0, 1), 'general offsets not supported'
  beam_size = num_decodes
  batch_size = inputs.shape[0]
  end_marker = jnp.array(eos_id)
  if max_decode_len is None:
    max_decode_len = inputs.shape[1]
  max_decode_len += 1  # A dummy token in front.

  right_aligned_input = None
  live_seqs = None
  if initial_index is not None:
    right_aligned_input = decoding._right_align_prompts(inputs)  # pylint: disable=protected-access
    length = inputs.shape[1]
    inputs = jnp.pad(right_aligned_input[:, -1][:, None],
                     ((0, 0), (0, length - 1)), constant_values=0)
    live_seqs = jnp.pad(right_aligned_input[:, -1][:, None],
                        ((0, 0), (0, max_decode_len - 1)), constant_values=0)
    live_seqs = jnp.broadcast_to(
        live_seqs[:, None, :], (batch_size, beam_size, max_decode_len))
  else:
    initial_index = jnp.zeros((batch_size,), dtype=jnp.int32)

  init = decoding.beam_init(batch_size, beam_size, max_decode_len, {},
                            cache_offset, live_seqs=live_seqs,
                            initial_index=initial_index)
  # The cache is carried flat: [batch * beams, ...] (at axis `cache_offset`);
  # an ancestors table as [batch, beams, length].
  expand = functools.partial(decoding.flat_batch_beam_expand,
                             beam_size=beam_size, offset=cache_offset)
  flat_cache0 = _map_rows(
      expand,
      lambda x: jnp.broadcast_to(x, (batch_size, beam_size, x.shape[2])),
      cache, cache_offset,
      apply_to_index=live_seqs is not None)
  init = init.replace(cache=flat_cache0)

  def cond_fn(state: decoding.BeamState) -> jax.Array:
    """t5x's termination test."""
    cur_index = state.cur_index + jnp.min(state.initial_index)
    not_at_end = cur_index < max_decode_len - 1
    exceed_max_decode_step = (max_decode_step > 0) & jnp.all(
        state.cur_index >= max_decode_step)
    min_brevity_penalty = decoding.brevity_penalty(alpha, max_decode_len)
    best_live_scores = state.live_logprobs[:, -1:] / min_brevity_penalty
    worst_finished_scores = jnp.min(state.finished_scores, axis=1,
                                    keepdims=True)
    worst_finished_scores = jnp.where(state.finished_flags,
                                      worst_finished_scores, NEG_INF)
    search_terminated = jnp.all(worst_finished_scores > best_live_scores)
    raw_min_log_prob = min_log_prob / min_brevity_penalty
    none_pass_min_prob_check = jnp.all(
        best_live_scores < raw_min_log_prob) & (state.cur_index > 0)
    return (not_at_end & (~search_terminated) & (~none_pass_min_prob_check)
            & (~exceed_max_decode_step))

  def body_fn(state: decoding.BeamState) -> decoding.BeamState:
    """t5x's step; reorders with direct gathers, cache kept flat."""
    flat_ids = decoding.flatten_beam_dim(lax.dynamic_slice(
        state.live_seqs, (0, 0, state.cur_index), (batch_size, beam_size, 1)))
    decoding_state = decoding.DecodingState(
        cur_index=state.cur_index,
        sequences=decoding.flatten_beam_dim(state.live_seqs),
        cur_token=flat_ids,
        cache=state.cache)
    flat_logits, new_flat_cache = tokens_to_logits(decoding_state)
    logits = decoding.unflatten_beam_dim(flat_logits, batch_size, beam_size)

    candidate_log_probs = jax.nn.log_softmax(logits)
    log_probs = candidate_log_probs + state.live_logprobs[:, :, None]
    vocab_size = log_probs.shape[-1]
    beams_to_keep = 2 * beam_size
    flat_log_probs = log_probs.reshape((batch_size, beam_size * vocab_size))
    # lax.top_k: the same values and indices as t5x's `top_k_two_stage`
    # (a TPU lane-filling variant of it, twice the CPU time over 8 x 128,400).
    topk_log_probs, topk_indices = lax.top_k(flat_log_probs, k=beams_to_keep)
    topk_ids = topk_indices % vocab_size
    # Force decode `inputs` (the prompt) until PAD.
    next_input_token = jnp.expand_dims(inputs, axis=1).astype(jnp.int32)[
        :, :, state.cur_index + 1]
    out_of_prompt = next_input_token == 0
    inside_prompt_log_probs = jnp.concatenate([
        jnp.zeros((batch_size, 1), dtype=topk_log_probs.dtype),
        jnp.full_like(topk_log_probs[:, :beams_to_keep - 1], NEG_INF),
    ], axis=1)
    topk_log_probs = (topk_log_probs * out_of_prompt
                      + inside_prompt_log_probs * ~out_of_prompt)
    topk_ids = topk_ids * out_of_prompt + next_input_token * ~out_of_prompt
    topk_ids = jnp.expand_dims(topk_ids, axis=2)

    topk_beam_indices = topk_indices // vocab_size
    topk_seq = _gather(state.live_seqs, topk_beam_indices)
    topk_seq = lax.dynamic_update_slice(topk_seq, topk_ids,
                                        (0, 0, state.cur_index + 1))

    newly_finished = topk_seq[:, :, state.cur_index + 1] == end_marker
    new_log_probs = topk_log_probs + newly_finished * NEG_INF
    _, new_topk_indices = lax.top_k(new_log_probs, k=beam_size)
    new_topk_indices = jnp.flip(new_topk_indices, axis=1)
    top_alive_seq = _gather(topk_seq, new_topk_indices)
    top_alive_log_probs = _gather(new_log_probs, new_topk_indices)
    top_alive_indices = _gather(topk_beam_indices, new_topk_indices)
    # One direct gather of flat cache rows: row b * beams + beam. The rows
    # are in bounds; mode="clip" spares jnp.take's default out-of-bounds
    # fill (a select over the whole cache array). A layer with an
    # ancestors table keeps its rows in place: the table's rows move.
    flat_rows = (jnp.arange(batch_size)[:, None] * beam_size
                 + top_alive_indices).reshape(-1)
    top_alive_cache = _map_rows(
        lambda x: jnp.take(x, flat_rows, axis=cache_offset, mode="clip"),
        lambda x: _gather(x, top_alive_indices), new_flat_cache,
        cache_offset, keep_tabled=True)

    lengths = state.cur_index + 1
    topk_lengths = jnp.repeat(initial_index[:, None], beams_to_keep, axis=1)
    lengths = topk_lengths + lengths
    new_scores = topk_log_probs / decoding.brevity_penalty(alpha, lengths)  # pytype: disable=wrong-arg-types
    new_scores += (~newly_finished) * NEG_INF

    finished_seqs = jnp.concatenate([state.finished_seqs, topk_seq], axis=1)
    finished_scores = jnp.concatenate([state.finished_scores, new_scores],
                                      axis=1)
    finished_flags = jnp.concatenate([state.finished_flags, newly_finished],
                                     axis=1)
    top_finished_seq, top_finished_scores, top_finished_flags = _gather_topk(
        [finished_seqs, finished_scores, finished_flags], finished_scores,
        beam_size)

    return decoding.BeamState(
        cur_index=state.cur_index + 1,
        live_logprobs=top_alive_log_probs,
        finished_scores=top_finished_scores,
        live_seqs=top_alive_seq,
        finished_seqs=top_finished_seq,
        finished_flags=top_finished_flags,
        cache=top_alive_cache,
        initial_index=initial_index,
    )

  final_state = lax.while_loop(cond_fn, body_fn, init)

  # A batch item with no finished sequence returns its live ones.
  any_finished = jnp.any(final_state.finished_flags, axis=1)
  finished_seqs = jnp.where(any_finished[:, None, None],
                            final_state.finished_seqs, final_state.live_seqs)
  finished_scores = jnp.where(any_finished[:, None],
                              final_state.finished_scores,
                              final_state.live_logprobs)

  if right_aligned_input is not None:
    # Prompt + completion, left aligned (t5x's code).
    finished_seqs = finished_seqs[:, :, 1:]
    right_aligned_input = jnp.broadcast_to(
        right_aligned_input[:, None, :],
        (batch_size, finished_seqs.shape[1], right_aligned_input.shape[-1]))
    finished_seqs = jnp.concatenate([right_aligned_input, finished_seqs],
                                    axis=-1)
    flat_finished_seqs = jnp.reshape(finished_seqs,
                                     (-1, finished_seqs.shape[-1]))
    flat_finished_seqs = decoding._left_align_prompts(flat_finished_seqs)  # pylint: disable=protected-access
    left_aligned_seqs = jnp.reshape(flat_finished_seqs, finished_seqs.shape)
    finished_seqs = left_aligned_seqs[:, :, :max_decode_len - 1]
  else:
    finished_seqs = finished_seqs[:, :, 1:]  # Drop the dummy token.

  return finished_seqs, finished_scores
