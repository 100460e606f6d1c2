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
  length 128 that is ~20x the rest of the per-token work). Here
  `cache_cross_attention=True` computes them once, at the first step (under
  `lax.cond`), and caches them. It is OFF by default: on XLA:CPU the
  conditional inside t5x's decoding while-loop made decoding slower, not
  faster (measured: `pad_jax.bench decode`); filling the cache before the
  loop needs a model-class `_compute_kv_cache` override (future work).
* the relative-position bias is recomputed in every layer, and in decoding
  for the full `max_decode_length**2` matrix at every step; here it is
  computed once per stack, and for decoding only the current query row.

Numerics are identical to t5x's network (fp32): same RMS layer norm, same
attention (no `1/sqrt(d)` scaling, folded into the initialisers), same
bucketing of relative positions.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

from flax import linen as nn
from flax import struct
from flax.linen import partitioning as nn_partitioning
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
from t5x.examples.t5 import layers

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
    cache_cross_attention: cache cross-attention keys/values while decoding
      (computed at the first step under `lax.cond`; slower on XLA:CPU).
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

  Returning the kernel (rather than applying it) lets the cross-attention
  cache use it inside `lax.cond`.

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


def _project(x: Array, kernel: Array, dtype: Any) -> Array:
  """`[b, l, d] x [d, h, k] -> [b, l, h, k]`."""
  return jnp.einsum('bld,dhk->blhk', jnp.asarray(x, dtype), kernel)


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

  def _key_value(self, inputs_kv: Array, decode: bool, cross: bool,
                 key_kernel: Array, value_kernel: Array):
    """Keys and values, through the cache when decoding. Returns (k, v, mask)."""
    project = lambda k: _project(inputs_kv, k, self.dtype)
    if not decode:
      return project(key_kernel), project(value_kernel), None
    initialized = self.has_variable('cache', 'cached_key')
    batch, length = inputs_kv.shape[0], inputs_kv.shape[1]
    shape = (batch, length, self.num_heads, self.head_dim)
    cached_key = self.variable('cache', 'cached_key', jnp.zeros, shape,
                               self.dtype)
    cached_value = self.variable('cache', 'cached_value', jnp.zeros, shape,
                                 self.dtype)
    # Named `cache_index` so that t5x's `decoding.cache_map` leaves this
    # scalar alone when it expands / reorders the cache for beams.
    cache_index = self.variable('cache', 'cache_index',
                                lambda: jnp.array(0, dtype=jnp.int32))
    if not initialized:  # The cache-shaping call: plain attention.
      return project(key_kernel), project(value_kernel), None
    if cross:
      # Filled at the first step; `cache_index` is 0 until then.
      key, value = lax.cond(
          cache_index.value > 0,
          lambda: (cached_key.value, cached_value.value),
          lambda: (project(key_kernel), project(value_kernel)))
      cached_key.value, cached_value.value = key, value
      cache_index.value = jnp.array(1, dtype=jnp.int32)
      return key, value, None
    cache_length = cached_key.value.shape[1]
    if inputs_kv.shape[1] != 1:
      raise ValueError('Autoregressive decoding feeds one position at a time; '
                       f'got inputs of length {inputs_kv.shape[1]}.')
    index = cache_index.value
    key = lax.dynamic_update_slice_in_dim(cached_key.value,
                                          project(key_kernel), index, axis=1)
    value = lax.dynamic_update_slice_in_dim(cached_value.value,
                                            project(value_kernel), index, axis=1)
    cached_key.value, cached_value.value = key, value
    cache_index.value = index + 1
    # The query may only see positions already generated.
    mask = jnp.broadcast_to(jnp.arange(cache_length) <= index,
                            (batch, 1, 1, cache_length))
    return key, value, mask

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
      decode: use (and fill) the autoregressive cache.
      deterministic: disable dropout.
      cross: cache `inputs_kv`'s keys/values once (cross-attention).

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
    key, value, cache_mask = self._key_value(inputs_kv, decode, cross,
                                             key_kernel, value_kernel)
    query = with_sharding_constraint(query, ('batch', 'length', 'heads', 'kv'))
    key = with_sharding_constraint(key, ('batch', 'length', 'heads', 'kv'))
    value = with_sharding_constraint(value, ('batch', 'length', 'heads', 'kv'))

    mask = layers.combine_masks(mask, cache_mask)
    attention_bias = None
    if mask is not None:
      attention_bias = lax.select(
          mask > 0, jnp.full(mask.shape, 0.0).astype(self.dtype),
          jnp.full(mask.shape, -1e10).astype(self.dtype))
    if bias is not None:
      attention_bias = layers.combine_biases(attention_bias, bias)

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
    return jnp.einsum('blhk,hkd->bld', x, out_kernel)


def _dropout(cfg: T5Config, x: Array, deterministic: bool) -> Array:
  return nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(
      x, deterministic=deterministic)


def _attention(cfg: T5Config, name: str) -> MultiHeadDotProductAttention:
  return MultiHeadDotProductAttention(
      num_heads=cfg.num_heads, head_dim=cfg.head_dim, dtype=cfg.dtype,
      dropout_rate=cfg.dropout_rate,
      float32_logits=cfg.float32_attention_logits, name=name)


def _mlp(cfg: T5Config, x: Array, deterministic: bool) -> Array:
  y = layers.LayerNorm(dtype=cfg.dtype, name='pre_mlp_layer_norm')(x)
  y = layers.MlpBlock(intermediate_dim=cfg.mlp_dim,
                      activations=cfg.mlp_activations,
                      intermediate_dropout_rate=cfg.dropout_rate,
                      dtype=cfg.dtype, name='mlp')(
                          y, deterministic=deterministic)
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
        decode=decode and cfg.cache_cross_attention, cross=True)
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
               deterministic=False, decode=False, max_decode_length=None):
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
    if cfg.logits_via_embedding:
      logits = self.shared_embedding.attend(y)
      return logits / jnp.sqrt(y.shape[-1])
    return layers.DenseGeneral(cfg.vocab_size, dtype=jnp.float32,
                               kernel_axes=('embed', 'vocab'),
                               name='logits_dense')(y)


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
             enable_dropout=True, decode=False, max_decode_length=None):
    """Decoder logits `[batch, len, vocab]` given the encoder output."""
    cfg = self.config
    if decode:
      decoder_mask = None
      encoder_decoder_mask = layers.make_attention_mask(
          jnp.ones_like(decoder_target_tokens), encoder_input_tokens > 0,
          dtype=cfg.dtype)
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
        max_decode_length=max_decode_length)

  def __call__(self, encoder_input_tokens, decoder_input_tokens,
               decoder_target_tokens, encoder_segment_ids=None,
               decoder_segment_ids=None, encoder_positions=None,
               decoder_positions=None, *, enable_dropout: bool = True,
               decode: bool = False):
    """Teacher-forced logits (or, with `decode`, the cache-shaping call)."""
    del encoder_positions  # Relative positions only.
    encoded = self.encode(encoder_input_tokens,
                          encoder_segment_ids=encoder_segment_ids,
                          enable_dropout=enable_dropout)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                       decoder_target_tokens,
                       encoder_segment_ids=encoder_segment_ids,
                       decoder_segment_ids=decoder_segment_ids,
                       decoder_positions=decoder_positions,
                       enable_dropout=enable_dropout, decode=decode)
