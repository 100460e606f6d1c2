"""Decoder-only (Llama-family) student network, driven by t5x's DecoderOnlyModel.

The Hugging Face Llama / Qwen2 / Mistral architecture as a pure Flax
network: RMSNorm before attention and MLP, rotary position embeddings
(`rope_theta`, `rope_type` "default" / "linear" / "llama3"), grouped-query
attention (`num_kv_heads`), optional query/key/value and output biases
(Qwen2: qkv only), a SwiGLU MLP, tied or untied output embeddings.
`pad_jax.student.hf_import_decoder` maps HF checkpoints onto it (fp32
logits and greedy ids equal HF's: `tests/hf_import_decoder_test.py`).

`t5x.models.DecoderOnlyModel` drives it unchanged:

* training / scoring: teacher-forced logits over packed batches
  (`decoder_segment_ids` keep the examples apart, `decoder_positions`
  restart the rotary positions at each example), causal attention, or
  prefix-LM attention (bidirectional over the inputs) when the model class
  passes `decoder_causal_attention` (`inputs_bidirectional_attention`);
* `predict_batch`: a `decode=True` call shapes the `cache` collection, a
  `prefill=True` call writes the prompts' keys/values and sets each row's
  `cache_index` to its prompt length, then one `decode=True` call per
  token writes and attends at each row's own index.

Parameters (logical axes in brackets; HF's `Linear.weight` transposed):

  token_embedder/embedding                    [vocab, embed]
  layers_<i>/pre_self_attention_layer_norm/scale    [embed]
  layers_<i>/self_attention/{query,key,value}/kernel [embed, joined_kv]
                          (+ bias [joined_kv] with `qkv_bias`)
  layers_<i>/self_attention/out/kernel        [joined_kv, embed] (+ bias)
  layers_<i>/pre_mlp_layer_norm/scale         [embed]
  layers_<i>/mlp/{wi_0 (gate), wi_1 (up)}/kernel [embed, mlp]
  layers_<i>/mlp/wo/kernel                    [mlp, embed]
  decoder_norm/scale                          [embed]
  logits_dense/kernel                         [embed, vocab] (untied only)
"""

from __future__ import annotations

from typing import Any, Optional

from flax import linen as nn
from flax import struct
from flax.linen import partitioning as nn_partitioning
import jax.numpy as jnp
from t5x.examples.t5 import layers

from pad_jax.student import decoder_layers
from pad_jax.student import network

with_sharding_constraint = nn_partitioning.with_sharding_constraint
Array = jnp.ndarray


@struct.dataclass
class DecoderConfig:
  """Hyperparameters (HF `config.json` names in brackets).

  Attributes:
    vocab_size: embeddings [vocab_size].
    dtype: activation dtype (parameters stay float32).
    emb_dim: model width [hidden_size].
    num_heads: query heads [num_attention_heads].
    num_kv_heads: key/value heads [num_key_value_heads]; divides num_heads.
    num_layers: decoder blocks [num_hidden_layers].
    head_dim: per-head size [head_dim, else hidden_size / heads].
    mlp_dim: SwiGLU hidden size [intermediate_size].
    rms_norm_eps: RMSNorm epsilon [rms_norm_eps].
    rope_theta: rotary base [rope_theta].
    rope_type: "default", "linear" or "llama3" [rope_scaling.rope_type].
    rope_factor: scaling factor ("linear", "llama3") [rope_scaling.factor].
    rope_low_freq_factor: "llama3" [rope_scaling.low_freq_factor].
    rope_high_freq_factor: "llama3" [rope_scaling.high_freq_factor].
    rope_original_max_position: "llama3"
      [rope_scaling.original_max_position_embeddings].
    qkv_bias: biases on q/k/v [Llama attention_bias; always for Qwen2].
    out_bias: a bias on the attention output [Llama attention_bias].
    tie_word_embeddings: logits through the token embedding
      [tie_word_embeddings]; else a `logits_dense` kernel.
    max_position_embeddings: longest sequence accepted
      [max_position_embeddings].
    dropout_rate: dropout on the residual branches, attention output and
      MLP hidden (HF's models have none: 0.0).
    float32_attention_logits: attention logits and softmax in float32.
  """

  vocab_size: int
  dtype: Any = jnp.float32
  emb_dim: int = 576
  num_heads: int = 9
  num_kv_heads: int = 3
  num_layers: int = 30
  head_dim: int = 64
  mlp_dim: int = 1536
  rms_norm_eps: float = 1e-5
  rope_theta: float = 10000.0
  rope_type: str = "default"
  rope_factor: float = 1.0
  rope_low_freq_factor: float = 1.0
  rope_high_freq_factor: float = 4.0
  rope_original_max_position: int = 8192
  qkv_bias: bool = False
  out_bias: bool = False
  tie_word_embeddings: bool = True
  max_position_embeddings: int = 8192
  dropout_rate: float = 0.0
  float32_attention_logits: bool = True

  def validate(self) -> None:
    """Raises ValueError naming the field of an impossible config."""
    if self.num_kv_heads <= 0 or self.num_heads % self.num_kv_heads:
      raise ValueError(f"DecoderConfig.num_kv_heads: {self.num_kv_heads} "
                       f"does not divide num_heads {self.num_heads}")
    if self.head_dim % 2:
      raise ValueError(f"DecoderConfig.head_dim: {self.head_dim} is odd "
                       "(rotary embeddings rotate pairs)")
    if self.rope_type not in decoder_layers.ROPE_TYPES:
      raise ValueError(
          f"DecoderConfig.rope_type: {self.rope_type!r} unsupported "
          f"(supported: {', '.join(decoder_layers.ROPE_TYPES)})")

  def inv_freq(self) -> tuple[float, ...]:
    """The rotary inverse frequencies (float32 values, as a tuple)."""
    return tuple(float(f) for f in decoder_layers.rope_inv_freq(
        self.head_dim, self.rope_theta, self.rope_type, self.rope_factor,
        self.rope_low_freq_factor, self.rope_high_freq_factor,
        self.rope_original_max_position))


def _dropout(cfg: DecoderConfig, x: Array, deterministic: bool) -> Array:
  return nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(
      x, deterministic=deterministic)


class DecoderLayer(nn.Module):
  """Pre-norm block: x + attn(norm(x)), then x + swiglu(norm(x))."""

  config: DecoderConfig

  @nn.compact
  def __call__(self, x: Array, positions: Array, bias: Optional[Array],
               deterministic: bool, cache_mode: Optional[str],
               cache_index: Optional[Array]) -> Array:
    cfg = self.config
    y = layers.LayerNorm(epsilon=cfg.rms_norm_eps, dtype=cfg.dtype,
                         name="pre_self_attention_layer_norm")(x)
    y = decoder_layers.SelfAttention(
        num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim, inv_freq=cfg.inv_freq(),
        qkv_bias=cfg.qkv_bias, out_bias=cfg.out_bias, dtype=cfg.dtype,
        float32_logits=cfg.float32_attention_logits,
        dropout_rate=cfg.dropout_rate, name="self_attention")(
            y, positions, bias, deterministic=deterministic,
            cache_mode=cache_mode, cache_index=cache_index)
    x = x + _dropout(cfg, y, deterministic)
    y = layers.LayerNorm(epsilon=cfg.rms_norm_eps, dtype=cfg.dtype,
                         name="pre_mlp_layer_norm")(x)
    y = network.MlpBlock(intermediate_dim=cfg.mlp_dim,
                         activations=("silu", "linear"),
                         intermediate_dropout_rate=cfg.dropout_rate,
                         dtype=cfg.dtype, name="mlp")(
                             y, deterministic=deterministic)
    x = x + _dropout(cfg, y, deterministic)
    return with_sharding_constraint(x, ("batch", "length", "embed"))


class DecoderOnlyTransformer(nn.Module):
  """The decoder-only network `t5x.models.DecoderOnlyModel` calls.

  Attributes:
    config: the `DecoderConfig`.
  """

  config: DecoderConfig

  def _cache_mode(self, decode: bool, prefill: bool) -> Optional[str]:
    """None, "init", "prefill" or "step" (see `SelfAttention`)."""
    has_cache = self.has_variable("cache", "cache_index")
    if prefill:
      if not has_cache:
        raise ValueError("prefill=True needs the cache a decode=True call "
                         "creates (apply it with mutable=['cache'] first)")
      return "prefill"
    if decode:
      return "step" if has_cache else "init"
    return None

  def _positions_and_bias(self, mode, decoder_input_tokens,
                          decoder_target_tokens, decoder_segment_ids,
                          decoder_positions, decoder_causal_attention,
                          prefill_lengths):
    """Rotary positions `[b, l]`, the attention bias, the cache index."""
    batch, length = decoder_input_tokens.shape
    index = None
    if mode is not None:
      index_var = self.variable("cache", "cache_index", jnp.zeros, (batch,),
                                jnp.int32)
      index = index_var.value
      if mode == "step":
        if length != 1:
          raise ValueError(f"decode steps take one token per row, got {length}")
        # Kept in the shape the decoding loop holds it: t5x's beam search
        # gives the prefilled `[batch]` index a beam axis, `[batch, beams]`,
        # and does not flatten it with the rest of the cache.
        index_var.value = index + 1
        index = jnp.broadcast_to(index.reshape(-1), (batch,))
        return index[:, None], None, index
      if mode == "prefill":
        index_var.value = jnp.asarray(prefill_lengths, jnp.int32)
    if decoder_positions is None:
      decoder_positions = jnp.broadcast_to(jnp.arange(length), (batch, length))
    mask = layers.make_decoder_mask(
        decoder_target_tokens=decoder_target_tokens, dtype=jnp.float32,
        decoder_causal_attention=decoder_causal_attention,
        decoder_segment_ids=decoder_segment_ids)
    bias = jnp.where(mask > 0, 0.0, decoder_layers.MASKED)[:, None]
    return decoder_positions, bias, index

  @nn.compact
  def __call__(self, decoder_input_tokens: Array,
               decoder_target_tokens: Array,
               decoder_segment_ids: Optional[Array] = None,
               decoder_positions: Optional[Array] = None,
               decoder_causal_attention: Optional[Array] = None, *,
               enable_dropout: bool = True, decode: bool = False,
               max_decode_length: Optional[int] = None,
               prefill: bool = False,
               prefill_lengths: Optional[Array] = None) -> Array:
    """Logits `[batch, length, vocab]` (float32).

    Args:
      decoder_input_tokens: `[batch, length]` ids (targets shifted right).
      decoder_target_tokens: `[batch, length]`; ids > 0 are not padding
        (the prefill call passes the inputs' causal-attention mask here).
      decoder_segment_ids: packing: tokens attend within their segment.
      decoder_positions: packing: rotary positions (default 0..length-1).
      decoder_causal_attention: prefix LM: positions marked 1 attend to
        each other bidirectionally.
      enable_dropout: training mode.
      decode: incremental decoding: the first call (no `cache` yet) creates
        the cache for `length` positions, later calls take one token per row.
      max_decode_length: unused (the cache length is the first call's).
      prefill: write the keys/values of `decoder_input_tokens` into the
        cache and set each row's next position to `prefill_lengths`.
      prefill_lengths: `[batch]` prompt lengths (with `prefill`).
    """
    del max_decode_length  # The cache is sized by the call that creates it.
    cfg = self.config
    cfg.validate()
    if decoder_input_tokens.shape[-1] > cfg.max_position_embeddings:
      raise ValueError(
          f"sequence length {decoder_input_tokens.shape[-1]} exceeds "
          f"DecoderConfig.max_position_embeddings {cfg.max_position_embeddings}")
    mode = self._cache_mode(decode, prefill)
    positions, bias, index = self._positions_and_bias(
        mode, decoder_input_tokens, decoder_target_tokens, decoder_segment_ids,
        decoder_positions, decoder_causal_attention, prefill_lengths)
    deterministic = not enable_dropout
    embedder = layers.Embed(
        num_embeddings=cfg.vocab_size, features=cfg.emb_dim, dtype=cfg.dtype,
        attend_dtype=jnp.float32,
        embedding_init=nn.initializers.normal(stddev=1.0),
        name="token_embedder")
    x = embedder(decoder_input_tokens.astype(jnp.int32)).astype(cfg.dtype)
    for i in range(cfg.num_layers):
      x = DecoderLayer(config=cfg, name=f"layers_{i}")(
          x, positions, bias, deterministic, mode, index)
    x = layers.LayerNorm(epsilon=cfg.rms_norm_eps, dtype=cfg.dtype,
                         name="decoder_norm")(x)
    x = _dropout(cfg, x, deterministic)
    if cfg.tie_word_embeddings:
      return embedder.attend(jnp.asarray(x, jnp.float32))
    return layers.DenseGeneral(cfg.vocab_size, dtype=jnp.float32,
                               kernel_axes=("embed", "vocab"),
                               name="logits_dense")(x)
