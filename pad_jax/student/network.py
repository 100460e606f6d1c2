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
  class passes it in: `pad_jax.student.models.EncoderDecoderModel` projects
  them once per input before the decoding loop
  (`Transformer.cross_attention_kv`) and attends to them from all beams /
  samples of that input without copying them
  (`attention.cached_attention`). Driven by t5x's stock model class the
  network projects them at every step, exactly as t5x's network does.
* the relative-position bias is recomputed in every layer, and in decoding
  for the full `max_decode_length**2` matrix at every step; here it is
  computed once per stack, and for decoding only the current query row.

Numerics are identical to t5x's network (fp32): same RMS layer norm, same
attention (no `1/sqrt(d)` scaling, folded into the initialisers), same
bucketing of relative positions.

The attention layer and its decode caches are in `attention.py`, the
projection kernels in `projection.py`; both multiply and attend through
`kernels` (CPU decoding kernels or the jnp code, their own choice).
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

from pad_jax.student import attention
from pad_jax.student import kernels
from pad_jax.student import projection

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


def _dropout(cfg: T5Config, x: Array, deterministic: bool) -> Array:
  return nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(
      x, deterministic=deterministic)


def _attention(cfg: T5Config,
               name: str) -> attention.MultiHeadDotProductAttention:
  return attention.MultiHeadDotProductAttention(
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
      kernel = projection.Kernel(
          in_shape=(d_model,), out_shape=(self.intermediate_dim,),
          kernel_axes=('embed', 'mlp'), kernel_init=self.kernel_init,
          dtype=self.dtype,
          name='wi' if len(self.activations) == 1 else f'wi_{idx}')()
      activation = layers._convert_to_activation_function(name)  # pylint: disable=protected-access
      hidden.append(activation(projection.dense(inputs, kernel, self.dtype)))
    x = functools.reduce(operator.mul, hidden)
    x = nn.Dropout(rate=self.intermediate_dropout_rate, broadcast_dims=(-2,))(
        x, deterministic=deterministic)  # Broadcast along length.
    x = with_sharding_constraint(x, ('batch', 'length', 'mlp'))
    kernel = projection.Kernel(
        in_shape=(self.intermediate_dim,), out_shape=(d_model,),
        kernel_axes=('mlp', 'embed'), kernel_init=self.kernel_init,
        dtype=self.dtype, name='wo')()
    return projection.dense(x, kernel, self.dtype)


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
               output_hidden=False, output_kernel=None):
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
      return self._tied_logits(y, output_kernel) / jnp.sqrt(y.shape[-1])
    return layers.DenseGeneral(cfg.vocab_size, dtype=jnp.float32,
                               kernel_axes=('embed', 'vocab'),
                               name='logits_dense')(y)

  def _tied_logits(self, y: Array, output_kernel: Optional[Array]) -> Array:
    """`Embed.attend(y)`: `y` times the `[vocab, emb]` table's transpose.

    `output_kernel`, that transpose made once per decoding call (see
    `attention.OUTPUT_KERNEL`), when the caller has it: the CPU kernel reads
    `[emb, vocab]` at about twice the rate of the table itself, and XLA does
    not hoist a transpose out of the decoding loop.
    """
    y = jnp.asarray(y, jnp.float32)
    if output_kernel is not None:
      return kernels.dense(y, output_kernel)
    table = jnp.asarray(self.shared_embedding.embedding, jnp.float32)
    return kernels.dense(y, table, transpose_w=True)


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
    (`output_layer`), for a loss that applies it itself. A tied output
    layer reads its table transposed from the `cross_attention` collection
    when it is there (`attention.OUTPUT_KERNEL`).
    """
    cfg = self.config
    output_kernel = None
    if self.has_variable(attention.CROSS_ATTENTION, attention.OUTPUT_KERNEL):
      output_kernel = self.get_variable(attention.CROSS_ATTENTION,
                                        attention.OUTPUT_KERNEL)
    if decode:
      decoder_mask = None
      # `[batch, 1, 1, input_len]`, as `make_attention_mask` builds for one
      # query position; the encoder batch may be 1/n of the decoder batch
      # (one input's beams share it, see `attention.cached_attention`).
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
        max_decode_length=max_decode_length, output_hidden=output_hidden,
        output_kernel=output_kernel)

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

    Apply with `mutable=[attention.CROSS_ATTENTION]`: the decoder runs once
    on a start token and every layer stores its cross-attention keys and
    values, `[batch, heads, input_len, head_dim]` (heads-major, as the
    decode cache). Only those are used (under `jit` the rest of this pass is
    dead code). The model class adds the tied output layer's transposed
    table (`attention.OUTPUT_KERNEL`) itself.

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
