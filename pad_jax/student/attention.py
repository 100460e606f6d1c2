"""The student's attention layer, with self- and cross-attention decode caches.

`MultiHeadDotProductAttention` has the parameters and numerics of t5x's
(`t5x.examples.t5.layers`); when decoding it reads keys and values from
caches laid out for CPU decoding:

* self-attention: the `cache` collection holds `[batch, heads, length,
  head_dim]` keys/values and an `ANCESTORS` table, through which
  `pad_jax.decoding.beam_search` reorders beams without moving the cache
  (`ancestor_attention`);
* cross-attention: the `CROSS_ATTENTION` collection holds each layer's keys
  and values, projected once per input before the decoding loop
  (`pad_jax.student.models.EncoderDecoderModel`) and shared by all beams or
  samples of that input (`cached_attention`).

The attention itself is `kernels.decode_attention` (a CPU kernel or the jnp
code, its own choice).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from flax import linen as nn
from flax.linen import partitioning as nn_partitioning
import jax
from jax import lax
import jax.numpy as jnp
from t5x.examples.t5 import layers

from pad_jax.student import kernels
from pad_jax.student import projection

with_sharding_constraint = nn_partitioning.with_sharding_constraint
Array = jnp.ndarray

# The variable collection of the decoder's cross-attention keys/values,
# `[batch, heads, input_len, head_dim]` per layer (not a parameter: it is
# derived from the encoder output; see `Transformer.cross_attention_kv`).
CROSS_ATTENTION = 'cross_attention'
# With a tied output layer, the same collection also holds the embedding
# table transposed, `[emb_dim, vocab]` (put there by the model class; the
# kernel reads that layout faster, see `Transformer.decode`).
OUTPUT_KERNEL = 'output_kernel'
# A self-attention cache leaf, `[batch, beams, length]` int32 (`[batch, 1,
# length]` as the network shapes it): position `k` of beam `i`'s sequence is
# in cache row `batch_index * beams + table[b, i, k]`. It marks the arrays
# beside it (its layer's keys and values) as addressed through it:
# `pad_jax.decoding.beam_search` moves the table, not them.
ANCESTORS = 'beam_ancestors'


def cached_attention(query: Array, key: Array, value: Array,
                     bias: Optional[Array], dtype: Any,
                     float32_logits: bool,
                     ancestors: Optional[Array] = None) -> Array:
  """Decoding attention to heads-major keys/values, shared by `n` query rows.

  The numerics of `layers.dot_product_attention` without dropout. Keys and
  values are `[batch, heads, kv_len, head_dim]` (the decode-cache layout:
  batch dimensions major, so XLA:CPU runs the two contractions as batched
  matrix products without transposing the cache at every step). Their
  batch may be `1/n` of the query batch: beams or samples of one input are
  consecutive rows (as `decoding.flat_batch_beam_expand` lays them out) and
  read one key/value set instead of a copy each. One beam per row:
  `kernels.decode_attention` (a CPU kernel or the jnp code).

  Args:
    query: `[batch * n, q_len, heads, head_dim]`.
    key: `[batch, heads, kv_len, head_dim]`.
    value: `[batch, heads, kv_len, head_dim]`.
    bias: broadcastable to `[batch, heads, q_len, kv_len]`, or None.
    dtype: output dtype.
    float32_logits: compute logits and softmax in float32.
    ancestors: the self-attention cache's `[batch, beams, kv_len]` table
      (`ANCESTORS`); with more than one beam, see `ancestor_attention`.

  Returns:
    `[batch * n, q_len, heads, head_dim]`.
  """
  if ancestors is not None and ancestors.shape[1] > 1:
    return ancestor_attention(query, key, value, bias, ancestors, dtype,
                              float32_logits)
  batch = key.shape[0]
  if query.shape[0] % batch:
    raise ValueError(f'query batch {query.shape[0]} is not a multiple of the '
                     f'key/value batch {batch}')
  if bias is not None and bias.shape[0] not in (1, batch):
    raise ValueError(f'bias batch {bias.shape[0]} is neither 1 nor {batch}')
  return kernels.decode_attention(query, key, value, bias, dtype=dtype,
                                  float32_logits=float32_logits)


def ancestor_attention(query: Array, key: Array, value: Array,
                       bias: Optional[Array], ancestors: Array, dtype: Any,
                       float32_logits: bool) -> Array:
  """Beams attend to their ancestors' cache rows; the cache never moves.

  `pad_jax.decoding.beam_search` does not reorder a self-attention cache
  that has an `ANCESTORS` table: row `g * beams + m` keeps what beam `m` of input `g`
  wrote at each step, and `ancestors[g, i, k] = m` says that position `k`
  of beam `i`'s sequence is in row `g * beams + m`. Every query takes the
  logits against all rows of its input (`beams` times the QK products of a
  reordered cache, a few MFLOP) and keeps, per position, its ancestor's;
  the values are summed the same way. Up to float rounding (the value sum
  runs per row, then over rows), this is `cached_attention` over the cache
  a reorder would have built, without writing it at every step.

  Args:
    query: `[batch * beams, q_len, heads, head_dim]`.
    key: `[batch * beams, heads, kv_len, head_dim]`.
    value: `[batch * beams, heads, kv_len, head_dim]`.
    bias: broadcastable to `[batch * beams, heads, q_len, kv_len]`, or None.
    ancestors: `[batch, beams, kv_len]` int32.
    dtype: output dtype.
    float32_logits: compute logits and softmax in float32.

  Returns:
    `[batch * beams, q_len, heads, head_dim]`.
  """
  groups, beams, length = ancestors.shape
  rows, q_len, heads, head_dim = query.shape
  # Each beam's query against every row m of its input, one beam at a time
  # (`[g * m, h, q, d]` x the cache as it is: matrix-vector products; four
  # queries in one product, or a reshaped cache, made XLA:CPU several
  # times slower).
  query = query.reshape(groups, beams, q_len, heads, head_dim)
  if float32_logits:
    query = query.astype(jnp.float32)
    key = key.astype(jnp.float32)
  logits = jnp.stack([
      jnp.einsum('rqhd,rhkd->rhqk', jnp.broadcast_to(
          query[:, i:i + 1], (groups, beams, q_len, heads, head_dim)).reshape(
              rows, q_len, heads, head_dim), key)
      for i in range(beams)], axis=2)  # [g * m, h, i, q, k]
  logits = logits.reshape(groups, beams, heads, beams, q_len, length)
  # [g, m, 1, i, 1, k]: row m holds position k of beam i.
  holds = (ancestors[:, None] == jnp.arange(beams)[None, :, None, None])
  holds = holds[:, :, None, :, None, :]
  logits = jnp.sum(jnp.where(holds, logits, 0), axis=1)  # [g, h, i, q, k]
  if bias is not None:
    if bias.shape[0] not in (1, rows):
      raise ValueError(f'bias batch {bias.shape[0]} is neither 1 nor {rows}')
    if bias.shape[0] == 1:
      bias = jnp.expand_dims(bias, 2)
    else:
      bias = jnp.swapaxes(bias.reshape((groups, beams) + bias.shape[1:]), 1, 2)
    logits = logits + bias.astype(logits.dtype)
  weights = jax.nn.softmax(logits).astype(dtype)
  weights = jnp.where(holds, weights[:, None], 0)  # [g, m, h, i, q, k]
  out = jnp.einsum('rhxk,rhkd->rhxd',
                   weights.reshape(rows, heads, beams * q_len, length), value)
  out = out.reshape(groups, beams, heads, beams, q_len, head_dim).sum(axis=1)
  out = jnp.transpose(out, (0, 2, 3, 1, 4))  # [g, i, q, h, d]
  return out.reshape(rows, q_len, heads, head_dim)


class MultiHeadDotProductAttention(nn.Module):
  """Multi-head attention with self- and cross-attention decode caches.

  Parameter-compatible with `t5x.examples.t5.layers.MultiHeadDotProductAttention`.

  Attributes:
    num_heads: attention heads.
    head_dim: size of each head.
    dtype: computation dtype.
    dropout_rate: attention-probability dropout.
    float32_logits: attention logits in float32.
    kernel_init: initializer of the projections.
  """

  num_heads: int
  head_dim: int
  dtype: Any = jnp.float32
  dropout_rate: float = 0.0
  float32_logits: bool = False
  kernel_init: Callable[..., Array] = nn.initializers.variance_scaling(
      1.0, 'fan_in', 'normal')

  def _kernel(self, name: str, d_model: int, init=None) -> Array:
    return projection.Kernel(in_shape=(d_model,),
                             out_shape=(self.num_heads, self.head_dim),
                             kernel_axes=('embed', 'joined_kv'),
                             kernel_init=init or self.kernel_init,
                             dtype=self.dtype, name=name)()

  def _key_value(self, inputs_kv: Array, decode: bool, key_kernel: Array,
                 value_kernel: Array):
    """Self-attention keys and values, through the cache when decoding.

    Returns:
      (key, value, mask, heads_major): with the cache, keys and values are
      the whole heads-major cache and `mask` hides the positions not yet
      written.
    """
    project = lambda k: projection.dense(inputs_kv, k, self.dtype)
    if not decode:
      return project(key_kernel), project(value_kernel), None, False
    initialized = self.has_variable('cache', 'cached_key')
    batch, length = inputs_kv.shape[0], inputs_kv.shape[1]
    shape = (batch, self.num_heads, length, self.head_dim)
    cached_key = self.variable('cache', 'cached_key', jnp.zeros, shape,
                               self.dtype)
    cached_value = self.variable('cache', 'cached_value', jnp.zeros, shape,
                                 self.dtype)
    # Named `cache_index` so that t5x's `decoding.cache_map` leaves this
    # scalar alone when it expands / reorders the cache for beams.
    cache_index = self.variable('cache', 'cache_index',
                                lambda: jnp.array(0, dtype=jnp.int32))
    # One beam per row until `pad_jax.decoding.beam_search` widens it (then
    # it keeps the cache in place, see `ancestor_attention`).
    ancestors = self.variable('cache', ANCESTORS, jnp.zeros,
                              (batch, 1, length), jnp.int32)
    if not initialized:  # The cache-shaping call: plain attention.
      return project(key_kernel), project(value_kernel), None, False
    cache_length = cached_key.value.shape[2]
    if inputs_kv.shape[1] != 1:
      raise ValueError('Autoregressive decoding feeds one position at a time; '
                       f'got inputs of length {inputs_kv.shape[1]}.')
    index = cache_index.value
    # Projected as `[b, 1, h, k]` and then swapped (a few KB): projecting
    # straight to heads-major made XLA transpose the kernels at every step.
    project = lambda k: jnp.swapaxes(
        projection.dense(inputs_kv, k, self.dtype), 1, 2)
    key = lax.dynamic_update_slice_in_dim(cached_key.value,
                                          project(key_kernel), index, axis=2)
    value = lax.dynamic_update_slice_in_dim(cached_value.value,
                                            project(value_kernel), index, axis=2)
    cached_key.value, cached_value.value = key, value
    cache_index.value = index + 1
    groups, beams, _ = ancestors.value.shape
    if beams > 1:  # Each row holds its own beam's newest position.
      ancestors.value = lax.dynamic_update_slice_in_dim(
          ancestors.value,
          jnp.broadcast_to(jnp.arange(beams, dtype=jnp.int32)[:, None],
                           (groups, beams, 1)), index, axis=2)
    # The query may only see positions already generated.
    mask = jnp.broadcast_to(jnp.arange(cache_length) <= index,
                            (batch, 1, 1, cache_length))
    return key, value, mask, True

  def _cross_key_value(self, inputs_kv: Array, key_kernel: Array,
                       value_kernel: Array):
    """Cross-attention keys and values; the `cross_attention` collection.

    When the collection is mutable (`Transformer.cross_attention_kv`) the
    projections are stored in it, heads-major; when it is given read-only
    (every decoding step of `pad_jax.student.models.EncoderDecoderModel`)
    they are read from it instead of projected.

    Returns:
      (key, value, heads_major).
    """
    if (self.has_variable(CROSS_ATTENTION, 'key') and
        not self.is_mutable_collection(CROSS_ATTENTION)):
      return (self.get_variable(CROSS_ATTENTION, 'key'),
              self.get_variable(CROSS_ATTENTION, 'value'), True)
    # (`init` makes every collection mutable: the variables it returns, and
    # so train states and checkpoints, must not gain this collection.)
    if (self.is_mutable_collection(CROSS_ATTENTION) and
        not self.is_initializing()):
      for name, kernel in (('key', key_kernel), ('value', value_kernel)):
        self.put_variable(CROSS_ATTENTION, name,
                          projection.dense(inputs_kv, kernel, self.dtype,
                                           heads_major=True))
    key = projection.dense(inputs_kv, key_kernel, self.dtype)
    value = projection.dense(inputs_kv, value_kernel, self.dtype)
    return key, value, False

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array,
               mask: Optional[Array] = None, bias: Optional[Array] = None, *,
               decode: bool = False, deterministic: bool = False,
               cross: bool = False) -> Array:
    """Attends from `inputs_q` to `inputs_kv`.

    Args:
      inputs_q: `[batch, q_len, d_model]`.
      inputs_kv: `[batch, kv_len, d_model]`.
      mask: `[batch, 1, q_len, kv_len]` attention mask (1 = attend).
      bias: `[1, heads, q_len, kv_len]` additive bias; when decoding
        self-attention, the bias row of the current position.
      decode: use (and fill) the autoregressive self-attention cache.
      deterministic: disable dropout.
      cross: cross-attention (keys/values may come from the
        `cross_attention` collection, see `_cross_key_value`).

    Returns:
      `[batch, q_len, d_model]`.
    """
    d_model = inputs_q.shape[-1]
    depth_scaling = jnp.sqrt(self.head_dim).astype(self.dtype)
    query_init = lambda *args: self.kernel_init(*args) / depth_scaling
    query_kernel = self._kernel('query', d_model, query_init)
    key_kernel = self._kernel('key', inputs_kv.shape[-1])
    value_kernel = self._kernel('value', inputs_kv.shape[-1])

    query = projection.dense(inputs_q, query_kernel, self.dtype)
    if cross:
      key, value, heads_major = self._cross_key_value(inputs_kv, key_kernel,
                                                      value_kernel)
      cache_mask = None
    else:
      key, value, cache_mask, heads_major = self._key_value(
          inputs_kv, decode, key_kernel, value_kernel)
    kv_axes = (('batch', 'heads', 'length', 'kv') if heads_major else
               ('batch', 'length', 'heads', 'kv'))
    query = with_sharding_constraint(query, ('batch', 'length', 'heads', 'kv'))
    key = with_sharding_constraint(key, kv_axes)
    value = with_sharding_constraint(value, kv_axes)

    mask = layers.combine_masks(mask, cache_mask)
    attention_bias = None
    if mask is not None:
      attention_bias = lax.select(
          mask > 0, jnp.full(mask.shape, 0.0).astype(self.dtype),
          jnp.full(mask.shape, -1e10).astype(self.dtype))
    if bias is not None:
      attention_bias = layers.combine_biases(attention_bias, bias)

    if heads_major:  # Decoding from a cache: dropout is off.
      ancestors = (None if cross else
                   self.get_variable('cache', ANCESTORS))
      x = cached_attention(query, key, value, attention_bias,
                           dtype=self.dtype, float32_logits=self.float32_logits,
                           ancestors=ancestors)
    else:
      dropout_rng = None
      if not deterministic and self.dropout_rate > 0.0:
        dropout_rng = self.make_rng('dropout')
      x = layers.dot_product_attention(
          query, key, value, bias=attention_bias, dropout_rng=dropout_rng,
          dropout_rate=self.dropout_rate, deterministic=deterministic,
          dtype=self.dtype, float32_logits=self.float32_logits)

    out_kernel = projection.Kernel(in_shape=(self.num_heads, self.head_dim),
                                   out_shape=(d_model,),
                                   kernel_axes=('joined_kv', 'embed'),
                                   kernel_init=self.kernel_init,
                                   dtype=self.dtype, name='out')()
    return projection.dense(x, out_kernel, self.dtype, in_dims=2)

