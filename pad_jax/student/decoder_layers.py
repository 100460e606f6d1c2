"""Layers of the decoder-only (Llama-family) student: rotary positions, GQA.

Used by `decoder_network.py`, which holds the config and the stack. The
numerics follow Hugging Face's `LlamaModel` / `Qwen2Model` (fp32 parity is
tested in `tests/hf_import_decoder_test.py`):

* rotary position embeddings in the "rotate half" layout of HF checkpoints
  (`rope_inv_freq` covers `rope_type` "default", "linear" and "llama3");
* grouped-query attention: query head `i` reads key/value head
  `i // (num_heads // num_kv_heads)`, as HF's `repeat_kv`; logits scaled by
  `head_dim**-0.5`;
* the self-attention decode cache: `[batch, kv_heads, length, head_dim]`
  keys and values per layer, written at each row's own position (the model
  class prefills prompts of different lengths, so positions are per row).

Projection kernels are stored 2-D (`[in, out]`, HF's `Linear.weight`
transposed) with logical axes `('embed', 'joined_kv')` /
`('joined_kv', 'embed')`, names t5x's partitioning and Adafactor rules know;
the products go through `projection.dense` (the CPU decoding kernel or
`jnp.dot`, its own choice).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from flax import linen as nn
from flax.linen import partitioning as nn_partitioning
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from pad_jax.student import projection

param_with_axes = nn_partitioning.param_with_axes
variable_with_axes = nn_partitioning.variable_with_axes
Array = jnp.ndarray

ROPE_TYPES = ("default", "linear", "llama3")
# Added to the attention logits of masked positions (t5x's convention: a
# large finite value, so a fully masked padding row stays finite).
MASKED = -1e10
_KERNEL_INIT = nn.initializers.variance_scaling(1.0, "fan_in",
                                                "truncated_normal")


# ------------------------------------------------------------------------------
# Rotary position embeddings.
# ------------------------------------------------------------------------------
def rope_inv_freq(head_dim: int, theta: float, rope_type: str = "default",
                  factor: float = 1.0, low_freq_factor: float = 1.0,
                  high_freq_factor: float = 4.0,
                  original_max_position: int = 8192) -> np.ndarray:
  """The `[head_dim // 2]` float32 inverse frequencies of HF's rotary layer.

  Args:
    head_dim: the rotated dimension (the whole head).
    theta: `rope_theta`, the base.
    rope_type: "default", "linear" (positions divided by `factor`) or
      "llama3" (Llama 3.1's smoothed per-frequency scaling).
    factor: the scaling factor ("linear", "llama3").
    low_freq_factor: "llama3" only.
    high_freq_factor: "llama3" only.
    original_max_position: "llama3" only: the pre-training context length.

  Returns:
    Inverse frequencies, computed in float32 as transformers does.

  Raises:
    ValueError: naming `rope_type` when it is not one of `ROPE_TYPES`.
  """
  if rope_type not in ROPE_TYPES:
    raise ValueError(f"rope_type {rope_type!r} unsupported (supported: "
                     f"{', '.join(ROPE_TYPES)})")
  exponents = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
  inv_freq = (np.float32(1.0) /
              (np.float32(theta) ** exponents)).astype(np.float32)
  if rope_type == "linear":
    return (inv_freq / np.float32(factor)).astype(np.float32)
  if rope_type == "llama3":
    low_freq_wavelen = original_max_position / low_freq_factor
    high_freq_wavelen = original_max_position / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = ((original_max_position / wavelen - low_freq_factor) /
              (high_freq_factor - low_freq_factor))
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)
  return inv_freq


def apply_rope(x: Array, positions: Array, inv_freq: np.ndarray) -> Array:
  """Rotates `x` `[batch, length, heads, head_dim]` by its positions.

  HF's layout: the two halves of each head are the pairs
  (`x1 * cos - x2 * sin`, `x2 * cos + x1 * sin`); angles in float32.

  Args:
    x: queries or keys.
    positions: `[batch, length]` integer positions.
    inv_freq: `rope_inv_freq(...)`.
  """
  angles = (positions.astype(jnp.float32)[..., None] *
            jnp.asarray(inv_freq, jnp.float32)[None, None, :])  # [b, l, d/2]
  angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
  cos = jnp.cos(angles).astype(x.dtype)
  sin = jnp.sin(angles).astype(x.dtype)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  return x * cos + rotated * sin


# ------------------------------------------------------------------------------
# Projections and attention.
# ------------------------------------------------------------------------------
class Dense(nn.Module):
  """`x @ kernel (+ bias)` with a 2-D float32 kernel `[in, features]`.

  Attributes:
    features: output size.
    kernel_axes: logical names of the kernel's two axes.
    use_bias: add a bias (logical axis `kernel_axes[1]`).
    dtype: computation dtype.
    kernel_init: kernel initializer.
  """

  features: int
  kernel_axes: tuple[str, str]
  use_bias: bool = False
  dtype: Any = jnp.float32
  kernel_init: Callable[..., Array] = _KERNEL_INIT

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = param_with_axes("kernel", self.kernel_init,
                             (x.shape[-1], self.features), jnp.float32,
                             axes=self.kernel_axes)
    y = projection.dense(x, jnp.asarray(kernel, self.dtype), self.dtype)
    if self.use_bias:
      bias = param_with_axes("bias", nn.initializers.zeros, (self.features,),
                             jnp.float32, axes=self.kernel_axes[1:])
      y = y + jnp.asarray(bias, self.dtype)
    return y


def gqa_attention(query: Array, key: Array, value: Array, bias: Array,
                  dtype: Any, float32_logits: bool) -> Array:
  """Softmax attention with `num_heads / num_kv_heads` queries per kv head.

  Args:
    query: `[batch, q_len, heads, head_dim]`, already scaled.
    key: `[batch, kv_heads, kv_len, head_dim]`.
    value: `[batch, kv_heads, kv_len, head_dim]`.
    bias: broadcastable to `[batch, 1, 1, q_len, kv_len]` (0 or `MASKED`).
    dtype: output dtype.
    float32_logits: logits and softmax in float32.

  Returns:
    `[batch, q_len, heads, head_dim]`.
  """
  batch, q_len, heads, head_dim = query.shape
  kv_heads = key.shape[1]
  query = query.reshape(batch, q_len, kv_heads, heads // kv_heads, head_dim)
  if float32_logits:
    query, key = query.astype(jnp.float32), key.astype(jnp.float32)
  logits = jnp.einsum("bqkgd,bksd->bkgqs", query, key)
  logits = logits + bias.astype(logits.dtype)
  weights = jax.nn.softmax(logits).astype(dtype)
  out = jnp.einsum("bkgqs,bksd->bqkgd", weights, value.astype(dtype))
  return out.reshape(batch, q_len, heads, head_dim)


def _write_rows(cache: Array, update: Array, index: Array) -> Array:
  """Writes `update` `[b, h, n, d]` into `cache` `[b, h, L, d]` at `index[b]`."""
  return jax.vmap(lambda c, u, i: lax.dynamic_update_slice_in_dim(
      c, u, i, axis=1))(cache, update.astype(cache.dtype), index)


class SelfAttention(nn.Module):
  """Grouped-query self-attention with rotary positions and a decode cache.

  Attributes:
    num_heads: query heads.
    num_kv_heads: key/value heads (divides `num_heads`).
    head_dim: per-head size.
    inv_freq: rotary inverse frequencies (`rope_inv_freq`, as a tuple so
      the module stays hashable).
    qkv_bias: biases on the query/key/value projections.
    out_bias: a bias on the output projection.
    dtype: computation dtype.
    float32_logits: attention logits and softmax in float32.
    dropout_rate: dropout on the attention weights' output.
  """

  num_heads: int
  num_kv_heads: int
  head_dim: int
  inv_freq: Any
  qkv_bias: bool = False
  out_bias: bool = False
  dtype: Any = jnp.float32
  float32_logits: bool = True
  dropout_rate: float = 0.0

  def _project(self, x: Array, heads: int, name: str) -> Array:
    y = Dense(heads * self.head_dim, ("embed", "joined_kv"),
              use_bias=self.qkv_bias, dtype=self.dtype, name=name)(x)
    return y.reshape(x.shape[:2] + (heads, self.head_dim))

  @nn.compact
  def __call__(self, x: Array, positions: Array, bias: Array, *,
               deterministic: bool = True, cache_mode: Optional[str] = None,
               cache_index: Optional[Array] = None) -> Array:
    """Attends `x` `[batch, length, embed]` to itself (or to the cache).

    Args:
      x: the normed residual stream.
      positions: `[batch, length]` positions of `x`'s tokens.
      bias: the attention bias (see `gqa_attention`): over `x` itself, or,
        with `cache_mode="step"`, over the whole cache.
      deterministic: no dropout.
      cache_mode: None (no cache), "init" (create it, attend over `x`),
        "prefill" (write `x`'s keys/values from position 0, attend over `x`)
        or "step" (write at `cache_index`, attend over the cache).
      cache_index: `[batch]` write positions for "step".
    """
    query = apply_rope(self._project(x, self.num_heads, "query"), positions,
                       self.inv_freq)
    key = apply_rope(self._project(x, self.num_kv_heads, "key"), positions,
                     self.inv_freq)
    value = self._project(x, self.num_kv_heads, "value")
    key, value = jnp.swapaxes(key, 1, 2), jnp.swapaxes(value, 1, 2)
    if cache_mode is not None:
      key, value = self._update_cache(key, value, cache_mode, cache_index)
    if cache_mode == "step":
      filled = jnp.arange(key.shape[2])[None, :] <= cache_index[:, None]
      bias = jnp.where(filled, 0.0, MASKED)[:, None, None, None, :]
    query = query * jnp.asarray(self.head_dim**-0.5, query.dtype)
    y = gqa_attention(query, key, value, bias, self.dtype, self.float32_logits)
    y = nn.Dropout(rate=self.dropout_rate)(y, deterministic=deterministic)
    return Dense(x.shape[-1], ("joined_kv", "embed"), use_bias=self.out_bias,
                 dtype=self.dtype, name="out")(
                     y.reshape(y.shape[:2] + (-1,)))

  def _update_cache(self, key: Array, value: Array, mode: str,
                    index: Optional[Array]) -> tuple[Array, Array]:
    """Stores this call's keys/values; returns what to attend to."""
    shape = key.shape  # [batch, kv_heads, length, head_dim]
    axes = ("batch", "kv_heads", "length", "kv")
    cached_key = variable_with_axes("cache", "cached_key", jnp.zeros, shape,
                                    key.dtype, axes=axes)
    cached_value = variable_with_axes("cache", "cached_value", jnp.zeros,
                                      shape, value.dtype, axes=axes)
    if mode == "init":
      return key, value
    if mode == "prefill":
      if shape[2] > cached_key.value.shape[2]:
        raise ValueError(f"prefill length {shape[2]} exceeds the cache "
                         f"length {cached_key.value.shape[2]}")
      start = jnp.zeros((shape[0],), jnp.int32)
      cached_key.value = _write_rows(cached_key.value, key, start)
      cached_value.value = _write_rows(cached_value.value, value, start)
      return key, value
    cached_key.value = _write_rows(cached_key.value, key, index)
    cached_value.value = _write_rows(cached_value.value, value, index)
    return cached_key.value, cached_value.value
