"""T5 encoder-decoder (v1.0 / CodeT5 and v1.1) network, tuned for CPU decoding.

A drop-in replacement for `t5x.examples.t5.network.Transformer`: the same
`T5Config` fields (plus a few), the same call signatures (so
`t5x.models.EncoderDecoderModel` drives it unchanged, for training, scoring
and `predict_batch`), and the SAME parameter tree (names, shapes, logical
axes), so a checkpoint written for one network restores into the other.

Why not t5x's example network as is? It expresses CodeT5 / T5 v1.0 exactly
(ReLU FFN, tied embeddings with logits scaled by `d_model**-0.5`, one
relative-position table per stack; `tests/convert_hf_test.py` checks both
networks against Hugging Face), but three costs are hard-coded in it and
cannot be switched off through gin:

* token embeddings are looked up with a one-hot matmul (`one_hot=True` is
  fixed in `Transformer.setup`): for CodeT5-small at batch 8 x (128 + 256)
  tokens that is ~200 of the ~850 GFLOP XLA counts per training step. Here
  `T5Config.one_hot_embedding` chooses, default a gather (on TPU SPMD the
  one-hot form partitions better; set it to True there).
* during incremental decoding every step recomputes the cross-attention keys
  and values of the whole encoder output in every decoder layer (for input
  length 128 that is ~10x the rest of the per-token work). Here the decoder
  reads them from the `cross_attention` variable collection when the model
  class passes it in: `pad_jax.student.models.EncoderDecoderModel` projects them once
  per input before the decoding loop (`Transformer.cross_attention_kv`) and
  attends to them from all beams / samples of that input without copying
  them (`cached_attention`). Driven by t5x's stock model class the network
  projects them at every step, exactly as t5x's network does.
* the relative-position bias is recomputed in every layer, and in decoding
  for the full `max_decode_length**2` matrix at every step; here it is
  computed once per stack, and for decoding only the current query row.

Numerics are identical to t5x's network (fp32): same RMS layer norm, same
attention (no `1/sqrt(d)` scaling, folded into the initialisers), same
bucketing of relative positions.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable, Optional, Sequence, Tuple

from flax import linen as nn
from flax import struct
from flax.linen import partitioning as nn_partitioning
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
from t5x.examples.t5 import layers

from pad_jax.decoding import beam_search
from pad_jax.student import kernels

param_with_axes = nn_partitioning.param_with_axes
with_sharding_constraint = nn_partitioning.with_sharding_constraint
Array = jnp.ndarray


@struct.dataclass
class T5Config:
  """Hyperparameters; a superset of `t5x.examples.t5.network.T5Config`.

  Attributes:
    vocab_size: number of embeddings (CodeT5: 32100).
    dtype: activation dtype.
    emb_dim: d_model.
    num_heads: attention heads.
    num_encoder_layers: encoder blocks.
    num_decoder_layers: decoder blocks.
    head_dim: d_kv.
    mlp_dim: d_ff.
    mlp_activations: ('relu',) for T5 v1.0 / CodeT5, ('gelu', 'linear') for
      v1.1 gated-GELU (flax's tanh-approximated gelu = HF `gelu_new`).
    dropout_rate: dropout everywhere t5x's network applies it.
    logits_via_embedding: tie the output layer to the token embedding and
      scale the decoder output by `emb_dim**-0.5` (T5 v1.0 / CodeT5).
    float32_attention_logits: attention logits in float32 whatever `dtype`.
    relative_attention_num_buckets: relative position buckets (T5: 32).
    relative_attention_max_distance: bucketing max distance (T5: 128).
    one_hot_embedding: embed tokens with a one-hot matmul instead of a gather.
    cache_cross_attention: ignored; kept so that `config.gin` files saved by
      earlier runs still parse (the cross-attention keys/values are now
      projected once per input by `pad_jax.student.models.EncoderDecoderModel`).
  """

  vocab_size: int
  dtype: Any = jnp.float32
  emb_dim: int = 512
  num_heads: int = 8
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  head_dim: int = 64
  mlp_dim: int = 2048
  mlp_activations: Sequence[str] = ('relu',)
  dropout_rate: float = 0.1
  logits_via_embedding: bool = False
  float32_attention_logits: bool = False
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  one_hot_embedding: bool = False
  cache_cross_attention: bool = False


def relative_position_buckets(qlen: int, klen: int, bidirectional: bool,
                              num_buckets: int, max_distance: int) -> np.ndarray:
  """Static `[qlen, klen]` int32 bucket ids (t5x's and HF's bucketing)."""
  context = np.arange(qlen, dtype=np.int32)[:, None]
  memory = np.arange(klen, dtype=np.int32)[None, :]
  return layers.RelativePositionBiases._relative_position_bucket(  # pylint: disable=protected-access
      memory - context, bidirectional=bidirectional, num_buckets=num_buckets,
      max_distance=max_distance).astype(np.int32)


class RelativePositionBiases(nn.Module):
  """T5 relative position biases; parameters as t5x's `RelativePositionBiases`.

  Attributes:
    num_buckets: relative position buckets.
    max_distance: distance at which all positions share the last bucket.
    num_heads: attention heads.
    dtype: output dtype.
  """

  num_buckets: int
  max_distance: int
  num_heads: int
  dtype: Any

  @nn.compact
  def __call__(self, qlen: int, klen: int, bidirectional: bool = True,
               query_position: Optional[Array] = None) -> Array:
    """Returns the `[1, heads, q, k]` bias (`q = 1` if `query_position`).

    Args:
      qlen: query length (static).
      klen: key length (static).
      bidirectional: encoder (True) or causal decoder (False) bucketing.
      query_position: traced scalar; if given, only that query row is built.
    """
    table = param_with_axes(
        'rel_embedding',
        nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform'),
        (self.num_heads, self.num_buckets), jnp.float32,
        axes=('heads', 'relpos_buckets'))
    buckets = relative_position_buckets(qlen, klen, bidirectional,
                                        self.num_buckets, self.max_distance)
    if query_position is None:
      buckets = jnp.asarray(buckets)
    else:
      buckets = lax.dynamic_slice_in_dim(jnp.asarray(buckets), query_position,
                                         1, axis=0)
    # A one-hot contraction (as t5x) rather than a gather: its gradient is a
    # small matmul instead of a scatter-add.
    one_hot = jax.nn.one_hot(buckets, self.num_buckets, dtype=self.dtype,
                             axis=0)
    values = lax.dot_general(jnp.asarray(table, self.dtype), one_hot,
                             (((1,), (0,)), ((), ())))
    return values[jnp.newaxis]


class Kernel(nn.Module):
  """A projection kernel stored exactly as t5x's `layers.DenseGeneral` does.

  Returning the kernel (rather than applying it) lets attention project
  only what it needs (cross-attention keys/values not at all when they
  were projected before the decoding loop).

  Attributes:
    in_shape: contracted input dims.
    out_shape: output dims.
    kernel_axes: logical axis names of the stored 2-D kernel.
    kernel_init: initializer of the stored 2-D kernel.
    dtype: dtype the kernel is cast to.
  """

  in_shape: Tuple[int, ...]
  out_shape: Tuple[int, ...]
  kernel_axes: Tuple[str, ...]
  kernel_init: Callable[..., Array]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self) -> Array:
    kernel = param_with_axes(
        'kernel', self.kernel_init,
        (int(np.prod(self.in_shape)), int(np.prod(self.out_shape))),
        jnp.float32, axes=self.kernel_axes)
    return jnp.reshape(jnp.asarray(kernel, self.dtype),
                       self.in_shape + self.out_shape)


def _dense(x: Array, kernel: Array, dtype: Any, in_dims: int = 1) -> Array:
  """`[b, l, *in] x [*in, *out] -> [b, l, *out]` as one 2-D matrix product.

  The contraction of t5x's `DenseGeneral` (and of an einsum over the 3-D
  activations), flattened to `[b * l, in]` by free reshapes: then the
  gradient of the kernel is a plain 2-D product too. Contracting batch and
  length as two dimensions, XLA:CPU transposed the activations' gradient
  for it (a strided copy of every `[tokens, mlp]` gradient, ~12% of a
  training step's op time); the sums are the same.
  """
  lead = x.shape[:x.ndim - in_dims]
  size_in = int(np.prod(x.shape[x.ndim - in_dims:]))
  y = kernels.matmul(jnp.asarray(x, dtype).reshape((-1, size_in)),
                     jnp.asarray(kernel).reshape((size_in, -1)))
  return y.reshape(lead + kernel.shape[in_dims:])


def _project(x: Array, kernel: Array, dtype: Any,
             heads_major: bool = False) -> Array:
  """`[b, l, d] x [d, h, k] -> [b, l, h, k]` (`heads_major`: `[b, h, l, k]`)."""
  y = _dense(x, kernel, dtype)
  return jnp.swapaxes(y, 1, 2) if heads_major else y


# The variable collection of the decoder's cross-attention keys/values,
# `[batch, heads, input_len, head_dim]` per layer (not a parameter: it is
# derived from the encoder output; see `Transformer.cross_attention_kv`).
CROSS_ATTENTION = 'cross_attention'
# With a tied output layer on CPU, the same collection also holds the
# embedding table transposed, `[emb_dim, vocab]` (see `Decoder._tied_logits`).
OUTPUT_KERNEL = 'output_kernel'


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
  read one key/value set instead of a copy each.

  Args:
    query: `[batch * n, q_len, heads, head_dim]`.
    key: `[batch, heads, kv_len, head_dim]`.
    value: `[batch, heads, kv_len, head_dim]`.
    bias: broadcastable to `[batch, heads, q_len, kv_len]`, or None.
    dtype: output dtype.
    float32_logits: compute logits and softmax in float32.
    ancestors: the self-attention cache's `[batch, beams, kv_len]` table
      (`beam_search.ANCESTORS`); with more than one beam, see
      `ancestor_attention`.

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
  if kernels.attention_applies(query, key, value, bias):
    # The same values on CPU, reading only the unmasked cache positions.
    return kernels.attention(query, key, value, bias).astype(dtype)
  query = query.reshape((batch, query.shape[0] // batch) + query.shape[1:])
  if float32_logits:
    query = query.astype(jnp.float32)
    key = key.astype(jnp.float32)
  logits = jnp.einsum('bnqhd,bhkd->bhnqk', query, key)
  if bias is not None:
    logits = logits + jnp.expand_dims(bias, 2).astype(logits.dtype)
  weights = jax.nn.softmax(logits).astype(dtype)
  out = jnp.einsum('bhnqk,bhkd->bnqhd', weights, value)
  return out.reshape((-1,) + out.shape[2:])


def ancestor_attention(query: Array, key: Array, value: Array,
                       bias: Optional[Array], ancestors: Array, dtype: Any,
                       float32_logits: bool) -> Array:
  """Beams attend to their ancestors' cache rows; the cache never moves.

  `pad_jax.decoding.beam_search` does not reorder a self-attention cache that has an
  `ancestors` table: row `g * beams + m` keeps what beam `m` of input `g`
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
    return Kernel(in_shape=(d_model,),
                  out_shape=(self.num_heads, self.head_dim),
                  kernel_axes=('embed', 'joined_kv'),
                  kernel_init=init or self.kernel_init, dtype=self.dtype,
                  name=name)()

  def _key_value(self, inputs_kv: Array, decode: bool, key_kernel: Array,
                 value_kernel: Array):
    """Self-attention keys and values, through the cache when decoding.

    Returns:
      (key, value, mask, heads_major): with the cache, keys and values are
      the whole heads-major cache and `mask` hides the positions not yet
      written.
    """
    project = lambda k: _project(inputs_kv, k, self.dtype)
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
    # One beam per row until `pad_jax.decoding.beam_search` widens it (then it keeps
    # the cache in place, see `ancestor_attention`).
    ancestors = self.variable('cache', beam_search.ANCESTORS, jnp.zeros,
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
    project = lambda k: jnp.swapaxes(_project(inputs_kv, k, self.dtype), 1, 2)
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
    (every decoding step of `pad_jax.student.models.EncoderDecoderModel`) they are
    read from it instead of projected.

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
                          _project(inputs_kv, kernel, self.dtype,
                                   heads_major=True))
    key = _project(inputs_kv, key_kernel, self.dtype)
    value = _project(inputs_kv, value_kernel, self.dtype)
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

    query = _project(inputs_q, query_kernel, self.dtype)
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
                   self.get_variable('cache', beam_search.ANCESTORS))
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

    out_kernel = Kernel(in_shape=(self.num_heads, self.head_dim),
                        out_shape=(d_model,),
                        kernel_axes=('joined_kv', 'embed'),
                        kernel_init=self.kernel_init, dtype=self.dtype,
                        name='out')()
    return _dense(x, out_kernel, self.dtype, in_dims=2)


def _dropout(cfg: T5Config, x: Array, deterministic: bool) -> Array:
  return nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(
      x, deterministic=deterministic)


def _attention(cfg: T5Config, name: str) -> MultiHeadDotProductAttention:
  return MultiHeadDotProductAttention(
      num_heads=cfg.num_heads, head_dim=cfg.head_dim, dtype=cfg.dtype,
      dropout_rate=cfg.dropout_rate,
      float32_logits=cfg.float32_attention_logits, name=name)


class MlpBlock(nn.Module):
  """t5x's `layers.MlpBlock` (same parameters, numerics, dropout), 2-D products.

  Attributes:
    intermediate_dim: d_ff.
    activations: one per `wi` kernel ('linear' or a `flax.linen` name);
      their product is the hidden activation.
    intermediate_dropout_rate: dropout on the hidden activation.
    dtype: computation dtype.
    kernel_init: initializer of the kernels (t5x's default).
  """

  intermediate_dim: int
  activations: Sequence[str]
  intermediate_dropout_rate: float
  dtype: Any = jnp.float32
  kernel_init: Callable[..., Array] = nn.initializers.variance_scaling(
      1.0, 'fan_in', 'truncated_normal')

  @nn.compact
  def __call__(self, inputs: Array, deterministic: bool = False) -> Array:
    d_model = inputs.shape[-1]
    hidden = []
    for idx, name in enumerate(self.activations):
      kernel = Kernel(in_shape=(d_model,), out_shape=(self.intermediate_dim,),
                      kernel_axes=('embed', 'mlp'),
                      kernel_init=self.kernel_init, dtype=self.dtype,
                      name='wi' if len(self.activations) == 1 else f'wi_{idx}')()
      activation = layers._convert_to_activation_function(name)  # pylint: disable=protected-access
      hidden.append(activation(_dense(inputs, kernel, self.dtype)))
    x = functools.reduce(operator.mul, hidden)
    x = nn.Dropout(rate=self.intermediate_dropout_rate, broadcast_dims=(-2,))(
        x, deterministic=deterministic)  # Broadcast along length.
    x = with_sharding_constraint(x, ('batch', 'length', 'mlp'))
    kernel = Kernel(in_shape=(self.intermediate_dim,), out_shape=(d_model,),
                    kernel_axes=('mlp', 'embed'), kernel_init=self.kernel_init,
                    dtype=self.dtype, name='wo')()
    return _dense(x, kernel, self.dtype)


def _mlp(cfg: T5Config, x: Array, deterministic: bool) -> Array:
  y = layers.LayerNorm(dtype=cfg.dtype, name='pre_mlp_layer_norm')(x)
  y = MlpBlock(intermediate_dim=cfg.mlp_dim, activations=cfg.mlp_activations,
               intermediate_dropout_rate=cfg.dropout_rate, dtype=cfg.dtype,
               name='mlp')(y, deterministic=deterministic)
  return _dropout(cfg, y, deterministic) + x


def _relpos(cfg: T5Config) -> RelativePositionBiases:
  return RelativePositionBiases(
      num_buckets=cfg.relative_attention_num_buckets,
      max_distance=cfg.relative_attention_max_distance,
      num_heads=cfg.num_heads, dtype=cfg.dtype, name='relpos_bias')


class EncoderLayer(nn.Module):
  """Transformer encoder layer."""

  config: T5Config

  @nn.compact
  def __call__(self, inputs, encoder_mask, bias, deterministic=False):
    cfg = self.config
    x = layers.LayerNorm(dtype=cfg.dtype, name='pre_attention_layer_norm')(
        inputs)
    x = _attention(cfg, 'attention')(x, x, encoder_mask, bias,
                                     deterministic=deterministic)
    x = _dropout(cfg, x, deterministic) + inputs
    return _mlp(cfg, x, deterministic)


class DecoderLayer(nn.Module):
  """Transformer decoder layer that attends to the encoder."""

  config: T5Config

  @nn.compact
  def __call__(self, inputs, encoded, decoder_mask, encoder_decoder_mask,
               bias, deterministic=False, decode=False):
    cfg = self.config
    x = layers.LayerNorm(dtype=cfg.dtype,
                         name='pre_self_attention_layer_norm')(inputs)
    x = _attention(cfg, 'self_attention')(x, x, decoder_mask, bias,
                                          deterministic=deterministic,
                                          decode=decode)
    x = _dropout(cfg, x, deterministic) + inputs
    y = layers.LayerNorm(dtype=cfg.dtype,
                         name='pre_cross_attention_layer_norm')(x)
    y = _attention(cfg, 'encoder_decoder_attention')(
        y, encoded, encoder_decoder_mask, deterministic=deterministic,
        cross=True)
    y = _dropout(cfg, y, deterministic) + x
    return _mlp(cfg, y, deterministic)


class Encoder(nn.Module):
  """A stack of encoder layers sharing one relative position table."""

  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, encoder_input_tokens, encoder_mask=None,
               deterministic=False):
    cfg = self.config
    length = encoder_input_tokens.shape[-1]
    bias = _relpos(cfg)(length, length, True)
    x = self.shared_embedding(encoder_input_tokens.astype('int32'))
    x = _dropout(cfg, x, deterministic).astype(cfg.dtype)
    for lyr in range(cfg.num_encoder_layers):
      x = EncoderLayer(config=cfg, name=f'layers_{lyr}')(
          x, encoder_mask, bias, deterministic)
    x = layers.LayerNorm(dtype=cfg.dtype, name='encoder_norm')(x)
    return nn.Dropout(rate=cfg.dropout_rate)(x, deterministic=deterministic)


class Decoder(nn.Module):
  """A stack of decoder layers sharing one relative position table."""

  config: T5Config
  shared_embedding: nn.Module

  def _bias(self, length: int, decode: bool, max_decode_length: Optional[int]):
    """Self-attention bias; one row per step when decoding incrementally."""
    relpos = _relpos(self.config)
    if not decode:
      return relpos(length, length, False)
    initialized = self.has_variable('cache', 'cache_index')
    position = self.variable('cache', 'cache_index',
                             lambda: jnp.array(0, dtype=jnp.int32))
    if not initialized:
      return relpos(length, length, False)
    total = max_decode_length or length
    index = position.value
    position.value = index + 1
    return relpos(total, total, False, query_position=index)

  @nn.compact
  def __call__(self, encoded, decoder_input_tokens, decoder_positions=None,
               decoder_mask=None, encoder_decoder_mask=None,
               deterministic=False, decode=False, max_decode_length=None,
               output_hidden=False):
    del decoder_positions  # Relative positions only.
    cfg = self.config
    bias = self._bias(decoder_input_tokens.shape[-1], decode,
                      max_decode_length)
    y = self.shared_embedding(decoder_input_tokens.astype('int32'))
    y = _dropout(cfg, y, deterministic).astype(cfg.dtype)
    for lyr in range(cfg.num_decoder_layers):
      y = DecoderLayer(config=cfg, name=f'layers_{lyr}')(
          y, encoded, decoder_mask, encoder_decoder_mask, bias,
          deterministic=deterministic, decode=decode)
    y = layers.LayerNorm(dtype=cfg.dtype, name='decoder_norm')(y)
    y = _dropout(cfg, y, deterministic)
    if output_hidden:  # The output layer is applied by the loss.
      return y
    if cfg.logits_via_embedding:
      return self._tied_logits(y) / jnp.sqrt(y.shape[-1])
    return layers.DenseGeneral(cfg.vocab_size, dtype=jnp.float32,
                               kernel_axes=('embed', 'vocab'),
                               name='logits_dense')(y)

  def _tied_logits(self, y: Array) -> Array:
    """`Embed.attend(y)`: `y` times the `[vocab, emb]` table's transpose.

    On CPU the kernel reads a `[emb, vocab]` copy at about twice the rate of
    the table itself, so `Transformer.cross_attention_kv` stores one in the
    `cross_attention` collection (once per decoding call, like the
    cross-attention keys/values) and every step reads it from there.
    """
    y = jnp.asarray(y, jnp.float32)
    table = jnp.asarray(self.shared_embedding.embedding, jnp.float32)
    if (self.has_variable(CROSS_ATTENTION, OUTPUT_KERNEL) and
        not self.is_mutable_collection(CROSS_ATTENTION)):
      return kernels.matmul(y, self.get_variable(CROSS_ATTENTION,
                                                 OUTPUT_KERNEL))
    if (self.is_mutable_collection(CROSS_ATTENTION) and
        not self.is_initializing() and kernels.applies(y, table)):
      self.put_variable(CROSS_ATTENTION, OUTPUT_KERNEL, table.T)
    return kernels.matmul(y, table, transpose_w=True)


class Transformer(nn.Module):
  """An encoder-decoder Transformer, API-compatible with t5x's example one.

  Attributes:
    config: the `T5Config`.
  """

  config: T5Config

  def setup(self):
    cfg = self.config
    self.shared_embedding = layers.Embed(
        num_embeddings=cfg.vocab_size, features=cfg.emb_dim, dtype=cfg.dtype,
        attend_dtype=jnp.float32,
        embedding_init=nn.initializers.normal(stddev=1.0),
        one_hot=cfg.one_hot_embedding, name='token_embedder')
    self.encoder = Encoder(config=cfg, shared_embedding=self.shared_embedding)
    self.decoder = Decoder(config=cfg, shared_embedding=self.shared_embedding)

  def encode(self, encoder_input_tokens, encoder_segment_ids=None,
             enable_dropout=True):
    """Encodes `[batch, len]` tokens to `[batch, len, emb_dim]`."""
    cfg = self.config
    mask = layers.make_attention_mask(encoder_input_tokens > 0,
                                      encoder_input_tokens > 0, dtype=cfg.dtype)
    if encoder_segment_ids is not None:
      mask = layers.combine_masks(
          mask, layers.make_attention_mask(encoder_segment_ids,
                                           encoder_segment_ids, jnp.equal,
                                           dtype=cfg.dtype))
    return self.encoder(encoder_input_tokens, mask,
                        deterministic=not enable_dropout)

  def decode(self, encoded, encoder_input_tokens, decoder_input_tokens,
             decoder_target_tokens, encoder_segment_ids=None,
             decoder_segment_ids=None, decoder_positions=None,
             enable_dropout=True, decode=False, max_decode_length=None,
             output_hidden=False):
    """Decoder logits `[batch, len, vocab]` given the encoder output.

    With `output_hidden`, the decoder's final hidden states
    `[batch, len, emb_dim]` instead: the input of the output layer
    (`output_layer`), for a loss that applies it itself.
    """
    cfg = self.config
    if decode:
      decoder_mask = None
      # `[batch, 1, 1, input_len]`, as `make_attention_mask` builds for one
      # query position; the encoder batch may be 1/n of the decoder batch
      # (one input's beams share it, see `cached_attention`).
      encoder_decoder_mask = jnp.asarray(
          encoder_input_tokens > 0, cfg.dtype)[:, jnp.newaxis, jnp.newaxis, :]
    else:
      decoder_mask = layers.make_decoder_mask(
          decoder_target_tokens=decoder_target_tokens, dtype=cfg.dtype,
          decoder_segment_ids=decoder_segment_ids)
      encoder_decoder_mask = layers.make_attention_mask(
          decoder_target_tokens > 0, encoder_input_tokens > 0, dtype=cfg.dtype)
    if encoder_segment_ids is not None:
      if decode:
        raise ValueError('Packed (segmented) inputs cannot be decoded.')
      encoder_decoder_mask = layers.combine_masks(
          encoder_decoder_mask,
          layers.make_attention_mask(decoder_segment_ids, encoder_segment_ids,
                                     jnp.equal, dtype=cfg.dtype))
    return self.decoder(
        encoded, decoder_input_tokens=decoder_input_tokens,
        decoder_positions=decoder_positions, decoder_mask=decoder_mask,
        encoder_decoder_mask=encoder_decoder_mask,
        deterministic=not enable_dropout, decode=decode,
        max_decode_length=max_decode_length, output_hidden=output_hidden)

  def output_layer(self) -> Tuple[Array, int, float]:
    """The output layer: `logits = dot(hidden, kernel) / divisor`.

    Returns:
      (kernel, vocab_axis, divisor): the float32 kernel as stored (tied:
      the token embedding `[vocab, emb_dim]`, `vocab_axis` 0, divisor
      `sqrt(emb_dim)`; untied: `logits_dense` `[emb_dim, vocab]`,
      `vocab_axis` 1, divisor 1), so `decode(..., output_hidden=True)`
      followed by this layer gives `decode`'s logits.
    """
    cfg = self.config
    if cfg.logits_via_embedding:
      kernel = jnp.asarray(self.shared_embedding.embedding, jnp.float32)
      return kernel, 0, float(np.sqrt(cfg.emb_dim))
    kernel = self.variables['params']['decoder']['logits_dense']['kernel']
    return jnp.asarray(kernel, jnp.float32), 1, 1.0

  def cross_attention_kv(self, encoded, encoder_input_tokens):
    """Fills the `cross_attention` collection from the encoder output.

    Apply with `mutable=[CROSS_ATTENTION]`: the decoder runs once on a start
    token and every layer stores its cross-attention keys and values,
    `[batch, input_len, heads, head_dim]` (and, decoding on CPU with a tied
    output layer, the decoder stores the embedding table transposed: see
    `Decoder._tied_logits`). Only those are used (under `jit` the rest of
    this pass is dead code).

    Args:
      encoded: `[batch, input_len, emb_dim]` encoder output.
      encoder_input_tokens: `[batch, input_len]` (for the mask's shape).

    Returns:
      The start token's logits (unused).
    """
    start = jnp.zeros((encoded.shape[0], 1), jnp.int32)
    return self.decode(encoded, encoder_input_tokens, start, start,
                       enable_dropout=False)

  def __call__(self, encoder_input_tokens, decoder_input_tokens,
               decoder_target_tokens, encoder_segment_ids=None,
               decoder_segment_ids=None, encoder_positions=None,
               decoder_positions=None, *, enable_dropout: bool = True,
               decode: bool = False, output_hidden: bool = False):
    """Teacher-forced logits (or, with `decode`, the cache-shaping call).

    `output_hidden`: the decoder's final hidden states instead of logits
    (see `decode`).
    """
    del encoder_positions  # Relative positions only.
    encoded = self.encode(encoder_input_tokens,
                          encoder_segment_ids=encoder_segment_ids,
                          enable_dropout=enable_dropout)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                       decoder_target_tokens,
                       encoder_segment_ids=encoder_segment_ids,
                       decoder_segment_ids=decoder_segment_ids,
                       decoder_positions=decoder_positions,
                       enable_dropout=enable_dropout, decode=decode,
                       output_hidden=output_hidden)
