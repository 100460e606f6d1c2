"""Step-wise decoding (stage IV): one line per row from a kept cache.

Step-wise search asks, at every step, for the next line of every partial
program (question x beam x candidate rows). Re-running t5x's
`predict_batch_with_aux` with the prefix as prompt each time encodes every
row's question again and re-feeds its whole prefix: L lines cost O(L^2)
decoder tokens per row. `LineDecoder` instead

* encodes each question once per batch of questions
  (`EncoderDecoderModel.decoding_context`: the encoder output and, with
  pad-jax's network, the cross-attention keys/values projected once and
  shared by all rows of the question);
* keeps the decoder's self-attention cache between calls: each call starts
  by gathering the cache rows of every row's parent (the beam it extends),
  so a kept beam's K candidates continue from their parent's cache;
* decodes, in one jitted `lax.while_loop`, until every row has generated a
  newline id (or EOS, or the line budget), one id per row per iteration
  through the model's own cached step (`EncoderDecoderModel.decode_ids`,
  so the CPU kernels apply).

One cache index for all rows. The network's cache has a single write
position for the whole batch (as in t5x), and rows end their lines at
different lengths, so a call starts at the shortest row's length `s`:
every row re-feeds its own ids from position `s` up to its prefix end (the
values it writes there equal what is already in its parent's row) and then
generates. Rows stay contiguous from position 0, so relative positions and
the causal mask are exactly those of one uninterrupted greedy decode: with
one beam and one candidate the ids are greedy decoding's. The re-fed part
is the spread of prefix lengths across the rows of a call (a few ids
between the beams of one question), not the prefix.

The loop waits for the slowest row (often a sampled line rambling to the
budget): when at most 1/8 of the rows are left (`STRAGGLER_FRACTION`),
they are gathered, with their cache rows and context
(`decoding_context_rows`), into a batch that small, finished there and
written back.

Sampling: per-row temperatures (0: argmax) and one static top-k, keys
folded from an explicit PRNG key by position. Log-probabilities are the
model's at temperature 1 (t5x's `rescale_log_probs=False`).

A decoder-only student (t5x `DecoderOnlyModel`) is decoded the same way
through `stepwise_decoder_only.DecoderOnlySteps`: no encoder, the prompt
fed as the first ids of every row (`LineDecoder.prompted`), the cache
`prompt room + max_decode_length` positions long.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from pad_jax.decoding import stepwise_decoder_only

# How a row's line ended (`LineBatch.end`).
END_LENGTH, END_NEWLINE, END_EOS = 0, 1, 2


class LineBatch(NamedTuple):
  """What one call decoded, per row (numpy).

  Attributes:
    tokens: `[rows, length + 1]`: position 0 the start id, then the prefix
      and the new ids.
    new: how many ids each row generated.
    logprob: their summed log-probability.
    end: `END_NEWLINE`, `END_EOS` or `END_LENGTH` (line budget or cache
      length reached).
  """
  tokens: np.ndarray
  new: np.ndarray
  logprob: np.ndarray
  end: np.ndarray


def _sample(logits: jnp.ndarray, temperatures: jnp.ndarray, key: jax.Array,
            top_k: int) -> jnp.ndarray:
  """Argmax where the temperature is 0, else a (top-k) sample at it."""
  greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  scaled = logits
  if top_k:
    kth = lax.top_k(logits, top_k)[0][:, -1:]
    scaled = jnp.where(logits < kth, -1e10, logits)
  safe = jnp.where(temperatures > 0, temperatures, 1.0)[:, None]
  sampled = jax.random.categorical(key, scaled / safe).astype(jnp.int32)
  return jnp.where(temperatures > 0, sampled, greedy)


def position_axes(model: Any, params: Any) -> tuple[Optional[int], ...]:
  """Per leaf of the model's cache (flattened), its position axis or None.

  Found from the cache's shapes at two lengths: pad-jax's network keeps
  keys as `[batch, heads, length, head_dim]`, t5x's as `[batch, heads,
  head_dim, length]`; the write indices are scalars (the decoder-only
  network's one per row, `[batch]`).
  """
  def shapes(length):
    return jax.tree_util.tree_leaves(jax.eval_shape(functools.partial(
        model.decoding_cache, rows=1, input_length=8,
        max_decode_length=length), params))
  return tuple(
      next((i for i, (m, n) in enumerate(zip(a.shape, b.shape)) if m != n),
           None) for a, b in zip(shapes(16), shapes(17)))


def _restart(cache: Any, parents: jnp.ndarray, start: jnp.ndarray,
             axes: tuple[Optional[int], ...]) -> Any:
  """The parents' cache rows, cleared from `start`, written from `start`.

  Positions from `start` on are fed again, and t5x's network adds a new
  key/value to what its cache holds (pad-jax's overwrites): they must be
  zero, as in a fresh cache. The write indices (integer leaves: a scalar,
  or one per row in the decoder-only network) are set to `start`.
  """
  leaves, treedef = jax.tree_util.tree_flatten(cache)
  out = []
  for x, axis in zip(leaves, axes):
    if axis is None and jnp.issubdtype(x.dtype, jnp.integer):
      shape = x.shape if x.ndim == 0 else parents.shape + x.shape[1:]
      out.append(jnp.full(shape, start, x.dtype))
      continue
    x = jnp.take(x, parents, axis=0)
    if axis is not None:
      shape = [1] * x.ndim
      shape[axis] = x.shape[axis]
      keep = (jnp.arange(x.shape[axis]) < start).reshape(shape)
      x = jnp.where(keep, x, jnp.zeros((), x.dtype))
    out.append(x)
  return jax.tree_util.tree_unflatten(treedef, out)


def decode_lines(model: Any, params: Any, context: Any, cache: Any,
                 parents: jnp.ndarray, tokens: jnp.ndarray,
                 lengths: jnp.ndarray, valid: jnp.ndarray, live: jnp.ndarray,
                 temperatures: jnp.ndarray, rng: jax.Array,
                 newline: jnp.ndarray, *, axes: tuple[Optional[int], ...],
                 eos_id: int, max_step_length: int, top_k: int
                 ) -> tuple[tuple[jnp.ndarray, ...], Any]:
  """The next line of every row, from its parent's cache row (pure; jit it).

  Args:
    model: `pad_jax.student.models.EncoderDecoderModel`, or
      `stepwise_decoder_only.DecoderOnlySteps`.
    params: its parameters.
    context: `model.decoding_context` of the questions.
    cache: the previous call's cache (its row count may differ from this
      call's: rows are gathered by `parents`).
    parents: `[rows]` the cache row each row continues.
    tokens: `[rows, length + 1]` start id and prefix, zero after.
    lengths: `[rows]` prefix lengths (ids after the start id).
    valid: `[rows]` cache positions already right in the parent's row
      (its prefix length; 0 for a row with nothing cached).
    live: `[rows]` False for padding rows (decoded, never waited for).
    temperatures: `[rows]` 0 for the argmax line.
    rng: the sampling key of this call.
    newline: `[vocab]` bool, the ids that end a line (all False: decode
      to EOS).
    axes: `position_axes(model, params)`.
    eos_id: the EOS id.
    max_step_length: the most ids of one line.
    top_k: sample among the k most likely ids (0: all).

  Returns:
    ((tokens, new, logprob, end), the updated cache).
  """
  length = tokens.shape[1] - 1
  rows = tokens.shape[0]
  start = jnp.min(jnp.where(live, valid, length))
  cache = _restart(cache, parents, start, axes)
  step = functools.partial(_step, model, params, rng, newline, eos_id,
                           max_step_length, top_k, length)
  carry = (start, cache, tokens, ~live, jnp.zeros(rows, jnp.int32),
           jnp.zeros(rows, jnp.float32), jnp.full(rows, END_LENGTH, jnp.int32))
  few = rows // STRAGGLER_FRACTION if rows >= STRAGGLER_MIN_ROWS else 0
  carry = lax.while_loop(
      lambda c: (c[0] < length) & (jnp.sum(~c[3]) > few),
      functools.partial(step, context, lengths, temperatures), carry)
  if few:
    carry = _stragglers(model, step, context, lengths, temperatures, carry,
                        few, length)
  _, cache, tokens, _, new, logprob, end = carry
  return (tokens, new, logprob, end), cache


# The loop runs until the slowest row ends its line; when only a few rows
# are left (at most 1/STRAGGLER_FRACTION of a batch of at least
# STRAGGLER_MIN_ROWS; a sampled line that rambles to the budget), they go
# on alone in a batch that small.
STRAGGLER_FRACTION = 8
STRAGGLER_MIN_ROWS = 32


def _step(model, params, rng, newline, eos_id, max_step_length, top_k, length,
          context, lengths, temperatures, carry):
  """One id for every row: feed position i, write (or force) i + 1."""
  i, cache, tokens, done, new, logprob, end = carry
  ids = lax.dynamic_slice_in_dim(tokens, i, 1, axis=1)
  logits, cache = model.decode_ids(params, cache, context, ids, length)
  logits = logits.astype(jnp.float32)
  choice = _sample(logits, temperatures, jax.random.fold_in(rng, i), top_k)
  generating = (i >= lengths) & ~done
  forced = lax.dynamic_slice_in_dim(tokens, i + 1, 1, axis=1)[:, 0]
  token = jnp.where(generating, choice, forced)
  tokens = lax.dynamic_update_slice_in_dim(tokens, token[:, None], i + 1,
                                           axis=1)
  logp = jnp.take_along_axis(jax.nn.log_softmax(logits), choice[:, None],
                             axis=1)[:, 0]
  logprob = logprob + jnp.where(generating, logp, 0.0)
  new = new + generating
  is_eos = token == eos_id
  is_newline = newline[token]
  end = jnp.where(generating & is_eos, END_EOS,
                  jnp.where(generating & is_newline, END_NEWLINE, end))
  done = done | (generating & (is_eos | is_newline | (new >= max_step_length)))
  return i + 1, cache, tokens, done, new, logprob, end


def _stragglers(model, step, context, lengths, temperatures, carry, few,
                length):
  """Finishes the rows not done yet in a batch of `few` rows; scatters back.

  The rows are gathered with their cache rows and context, decoded on from
  the same position (padding entries are done from the start and never
  written back), and written back where they came from.
  """
  i, cache, tokens, done, new, logprob, end = carry
  rows = tokens.shape[0]
  index = jnp.nonzero(~done, size=few, fill_value=rows)[0].astype(jnp.int32)
  real = index < rows
  safe = jnp.minimum(index, rows - 1)
  take = lambda x: jnp.take(x, safe, axis=0)
  small = (i, jax.tree_util.tree_map(
      lambda x: x if x.ndim == 0 else take(x), cache),
           take(tokens), take(done) | ~real, take(new), take(logprob),
           take(end))
  small = lax.while_loop(
      lambda c: (c[0] < length) & ~jnp.all(c[3]),
      functools.partial(step, model.decoding_context_rows(context, safe, rows),
                        take(lengths), take(temperatures)), small)
  put = lambda x, y: x.at[index].set(y, mode="drop")
  i, small_cache, *small_rows = small
  cache = jax.tree_util.tree_map(
      lambda x, y: y if x.ndim == 0 else put(x, y), cache, small_cache)
  return (i, cache) + tuple(put(x, y) for x, y in
                            zip((tokens, done, new, logprob, end), small_rows))


class LineDecoder:
  """The jitted pieces of step-wise decoding over one model.

  Args:
    model: a `pad_jax.student.models.EncoderDecoderModel` (over pad-jax's
      network or t5x's), or a t5x `DecoderOnlyModel` (decoded through
      `stepwise_decoder_only.DecoderOnlySteps`).
    params: its parameters.
    newline: `[vocab]` bool, the ids whose text has a newline.
    eos_id: the EOS id.
    max_decode_length: the most ids of a program.
    top_k: sample among the k most likely ids (0: all).

  Attributes:
    prompted: a decoder-only model: each row's first ids are its question's
      prompt (`context` is empty), and the cache holds them too
      (`sequence_length`).
  """

  def __init__(self, model: Any, params: Any, newline: np.ndarray, *,
               eos_id: int, max_decode_length: int, top_k: int = 0):
    self.prompted = stepwise_decoder_only.is_decoder_only(model)
    if self.prompted and not isinstance(
        model, stepwise_decoder_only.DecoderOnlySteps):
      model = stepwise_decoder_only.DecoderOnlySteps(model)
    self.model, self.params = model, params
    self.max_decode_length = max_decode_length
    self._newline = jnp.asarray(newline, bool)
    self._no_newline = jnp.zeros_like(self._newline)
    self._eos_id, self._top_k = eos_id, top_k
    self._context = jax.jit(model.decoding_context, static_argnums=2)
    self._decoders, self._cache_shapes = {}, {}
    self._axes = position_axes(model, params)

  def sequence_length(self, input_length: int) -> int:
    """Cache positions for inputs of `input_length` ids (after the start id).

    The program's `max_decode_length`, plus, for a decoder-only model, the
    prompt's room (the prompt is in the decoder's rows).
    """
    return self.max_decode_length + (input_length if self.prompted else 0)

  def context(self, encoder_inputs: np.ndarray, rows_per_input: int) -> Any:
    """`decoding_context` of `[batch, input_len]` questions (encoded once)."""
    return self._context(self.params, encoder_inputs, rows_per_input)

  def empty_cache(self, rows: int, input_length: int) -> Any:
    """A fresh all-zero cache of `rows` rows (its shapes traced once).

    Its length is `sequence_length(input_length)`.
    """
    key = (rows, input_length)
    if key not in self._cache_shapes:
      self._cache_shapes[key] = jax.eval_shape(functools.partial(
          self.model.decoding_cache, rows=rows, input_length=input_length,
          max_decode_length=self.sequence_length(input_length)), self.params)
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                  self._cache_shapes[key])

  def decode(self, context: Any, cache: Any, parents: np.ndarray,
             tokens: np.ndarray, lengths: np.ndarray, valid: np.ndarray,
             live: np.ndarray, temperatures: np.ndarray, rng: jax.Array, *,
             line: bool, budget: int) -> tuple[LineBatch, Any]:
    """`decode_lines` (see it), jitted per line budget; numpy results.

    `cache` is donated when the rows keep their number (else its buffers
    cannot hold the result): use the returned one.
    """
    rows = next(x.shape[0] for x in jax.tree_util.tree_leaves(cache) if x.ndim)
    key = (budget, len(parents) == rows)
    if key not in self._decoders:
      self._decoders[key] = jax.jit(functools.partial(
          decode_lines, self.model, axes=self._axes, eos_id=self._eos_id,
          max_step_length=budget, top_k=self._top_k),
          donate_argnums=(2,) if key[1] else ())
    out, cache = self._decoders[key](
        self.params, context, cache, parents, tokens, lengths, valid, live,
        temperatures, rng, self._newline if line else self._no_newline)
    return LineBatch(*(np.asarray(x) for x in out)), cache
