"""Tests for pad_jax.student.kernels: the CPU decoding kernels against the jnp code."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pad_jax.student import kernels
from pad_jax.student import network


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch):
  """Each test decides afresh whether the kernels load (then restores)."""
  monkeypatch.setattr(kernels, "_state", {})


def _rng(seed=0):
  return np.random.RandomState(seed)


def test_builds_once_into_the_cache_dir(tmp_path, monkeypatch):
  monkeypatch.setenv("PAD_JAX_KERNEL_CACHE", str(tmp_path))
  built = kernels.build()
  assert built.parent == tmp_path and built.suffix == ".so"
  mtime = built.stat().st_mtime_ns
  assert kernels.build() == built and built.stat().st_mtime_ns == mtime
  assert [p.name for p in tmp_path.iterdir()] == [built.name]  # No temp files.
  assert kernels.available()


def test_no_compiler_warns_and_falls_back(tmp_path, monkeypatch, caplog):
  monkeypatch.setenv("PAD_JAX_KERNEL_CACHE", str(tmp_path))
  monkeypatch.setenv("CXX", "no-such-compiler-here")
  with pytest.raises(RuntimeError, match="no-such-compiler-here"):
    kernels.build()
  monkeypatch.setattr(kernels, "_registered", {})  # As in a fresh process.
  with caplog.at_level(logging.WARNING):
    assert not kernels.available()
  assert "using jnp.dot" in caplog.text
  x, w = jnp.ones((2, 8), jnp.float32), jnp.ones((8, 3), jnp.float32)
  assert not kernels.applies(x, w)
  np.testing.assert_array_equal(kernels.matmul(x, w), jnp.dot(x, w))


def test_a_compile_error_is_reported(tmp_path, monkeypatch):
  monkeypatch.setenv("PAD_JAX_KERNEL_CACHE", str(tmp_path))
  monkeypatch.setenv("CXX", "false")  # Exists, fails.
  with pytest.raises(RuntimeError, match="building pad_jax's CPU kernels failed"):
    kernels.build()
  assert list(tmp_path.iterdir()) == []  # The temporary output is removed.


def test_env_switch_and_disabled_context():
  x, w = jnp.ones((2, 8), jnp.float32), jnp.ones((8, 3), jnp.float32)
  assert kernels.applies(x, w)
  with kernels.disabled():
    assert not kernels.applies(x, w)
    with kernels.disabled():
      assert not kernels.applies(x, w)
    assert not kernels.applies(x, w)
  assert kernels.applies(x, w)


def test_env_off(monkeypatch):
  monkeypatch.setenv("PAD_JAX_CPU_KERNELS", "0")
  assert not kernels.available()


@pytest.mark.parametrize("rows", [1, 3, 8, 13, 32])
@pytest.mark.parametrize("k,n", [(512, 512), (512, 2048), (2048, 512),
                                 (37, 101), (16, 1), (512, 32100), (100, 700)])
@pytest.mark.parametrize("transpose_w", [False, True])
def test_matmul_matches_float64(rows, k, n, transpose_w):
  rng = _rng(rows * 7 + k)
  x = rng.randn(rows, k).astype(np.float32)
  w = rng.randn(*((n, k) if transpose_w else (k, n))).astype(np.float32)
  assert kernels.applies(jnp.asarray(x), jnp.asarray(w))
  got = np.asarray(jax.jit(kernels.matmul, static_argnums=2)(x, w, transpose_w))
  want = x.astype(np.float64) @ (w.T if transpose_w else w).astype(np.float64)
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.sqrt(k) * 4)


def test_matmul_leading_axes_and_where_it_does_not_apply():
  rng = _rng(1)
  w = jnp.asarray(rng.randn(64, 48).astype(np.float32))
  x = jnp.asarray(rng.randn(2, 3, 64).astype(np.float32))  # 6 rows: kernel.
  assert kernels.applies(x, w)
  np.testing.assert_allclose(kernels.matmul(x, w), jnp.dot(x, w), atol=1e-5)
  for many in (jnp.ones((33, 64)), jnp.ones((3, 11, 64))):  # > 32: jnp.dot.
    assert not kernels.applies(many, w)
  assert not kernels.applies(x.astype(jnp.bfloat16), w)
  assert not kernels.applies(x, w.astype(jnp.bfloat16))


def test_matmul_gradients_are_jnp_dots():
  rng = _rng(2)
  x = jnp.asarray(rng.randn(4, 32).astype(np.float32))
  w = jnp.asarray(rng.randn(32, 20).astype(np.float32))
  for transpose_w, ww in ((False, w), (True, w.T)):
    loss = lambda x, w, t=transpose_w: jnp.sum(jnp.sin(kernels.matmul(x, w, t)))
    ref = lambda x, w, t=transpose_w: jnp.sum(jnp.sin(jnp.dot(x, w.T if t else w)))
    for a, b in zip(jax.grad(loss, (0, 1))(x, ww), jax.grad(ref, (0, 1))(x, ww)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _cached_attention(query, key, value, bias, use_kernel):
  fn = lambda q, k, v, b: network.cached_attention(q, k, v, b, jnp.float32, True)
  if use_kernel:
    return np.asarray(jax.jit(fn)(query, key, value, bias))
  with kernels.disabled():
    return np.asarray(jax.jit(fn)(query, key, value, bias))


@pytest.mark.parametrize("batch,samples,q_len,heads,length,depth", [
    (8, 1, 1, 8, 256, 64),   # A greedy step of CodeT5-small.
    (2, 3, 1, 4, 37, 64),    # 3 samples per input share its cache.
    (2, 1, 2, 2, 19, 24),    # Two query positions; head_dim not a multiple of 16.
    (2, 4, 2, 2, 33, 32),    # Samples x positions, masks differing by row.
    (1, 1, 1, 1, 5, 16),
])
def test_attention_matches_the_jnp_code(batch, samples, q_len, heads, length,
                                        depth):
  rng = _rng(batch + length)
  q = rng.randn(batch * samples, q_len, heads, depth).astype(np.float32)
  k = rng.randn(batch, heads, length, depth).astype(np.float32)
  v = rng.randn(batch, heads, length, depth).astype(np.float32)
  mask = rng.rand(batch, 1, q_len, length) > 0.4
  mask[0] = False  # Every position of batch entry 0 masked: uniform weights.
  relative = rng.randn(1, heads, q_len, length).astype(np.float32)
  bias = np.where(mask, relative, np.float32(-1e10)).astype(np.float32)
  assert kernels.attention_applies(jnp.asarray(q), jnp.asarray(k),
                                   jnp.asarray(v), jnp.asarray(bias))
  for b in (bias, None, bias[:1], relative):
    got = _cached_attention(q, k, v, b, use_kernel=True)
    want = _cached_attention(q, k, v, b, use_kernel=False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)
  # All-masked rows average every value, as the softmax over equal logits.
  got = _cached_attention(q, k, v, bias, use_kernel=True)
  np.testing.assert_allclose(
      got[:samples].transpose(0, 2, 1, 3)[..., 0, :],
      np.broadcast_to(v[0].mean(axis=1), (samples, heads, depth)),
      rtol=1e-5, atol=1e-5)


def test_attention_reads_only_unmasked_positions():
  """Garbage (NaN) in masked cache positions never reaches the output."""
  rng = _rng(3)
  q = rng.randn(2, 1, 2, 16).astype(np.float32)
  k = rng.randn(2, 2, 10, 16).astype(np.float32)
  v = rng.randn(2, 2, 10, 16).astype(np.float32)
  bias = np.zeros((1, 1, 1, 10), np.float32)
  bias[..., 6:] = -1e10  # Steps not yet decoded.
  want = _cached_attention(q, k, v, bias, use_kernel=False)
  k[:, :, 6:], v[:, :, 6:] = np.nan, np.nan
  np.testing.assert_allclose(_cached_attention(q, k, v, bias, use_kernel=True),
                             want, rtol=1e-5, atol=1e-6)


def test_attention_gradient_is_the_jnp_codes():
  rng = _rng(4)
  q = jnp.asarray(rng.randn(2, 1, 2, 16).astype(np.float32))
  k = jnp.asarray(rng.randn(2, 2, 7, 16).astype(np.float32))
  v = jnp.asarray(rng.randn(2, 2, 7, 16).astype(np.float32))
  loss = lambda q, k, v: jnp.sum(jnp.tanh(
      network.cached_attention(q, k, v, None, jnp.float32, True)))
  got = jax.grad(loss, (0, 1, 2))(q, k, v)
  with kernels.disabled():
    want = jax.grad(loss, (0, 1, 2))(q, k, v)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_attention_does_not_apply_to_many_rows_or_bf16():
  q = jnp.ones((8 * 17, 1, 2, 16))  # 17 samples per input.
  k = v = jnp.ones((8, 2, 5, 16))
  assert not kernels.attention_applies(q, k, v, None)
  assert not kernels.attention_applies(q[:8].astype(jnp.bfloat16), k, v, None)
  assert kernels.attention_applies(q[:8], k, v, None)
