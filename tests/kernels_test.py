"""Tests for pad_jax.student.kernels: the CPU decoding kernels against the jnp code.

Tests that build the kernels skip without a C++ compiler; the fallbacks
(no compiler, `PAD_JAX_CPU_KERNELS=0`, another platform) run everywhere.
"""

import functools
import json
import logging
import os
import shutil
import subprocess

import jax
from jax import export
import jax.numpy as jnp
import numpy as np
import pytest
import seqio
from t5x import decoding

from conftest import PY, REPO, subprocess_env
from pad_jax.student import attention
from pad_jax.student import kernels
from pad_jax.student import models
from pad_jax.student import network

needs_compiler = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "c++")) is None,
    reason="no C++ compiler ($CXX or c++) to build the optional CPU kernels")
TARGETS = ("pad_skinny_matmul_f32", "pad_decode_attention_f32")
TINY = dict(vocab_size=64, emb_dim=32, num_heads=4, num_encoder_layers=2,
            num_decoder_layers=2, head_dim=8, mlp_dim=64, dropout_rate=0.0,
            logits_via_embedding=True, float32_attention_logits=True)


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch):
  """Each test decides afresh whether the kernels load (then restores)."""
  monkeypatch.setattr(kernels, "_state", {})


def _rng(seed=0):
  return np.random.RandomState(seed)


@needs_compiler
def test_builds_once_into_the_cache_dir(tmp_path, monkeypatch):
  monkeypatch.setenv("PAD_JAX_KERNEL_CACHE", str(tmp_path))
  built = kernels.build()
  assert built.parent == tmp_path and built.suffix == ".so"
  mtime = built.stat().st_mtime_ns
  # A cached build runs no compiler (not even `--version`).
  monkeypatch.setattr(kernels.subprocess, "run", None)
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
  assert "using the jnp code" in caplog.text
  x, w = jnp.ones((2, 8), jnp.float32), jnp.ones((8, 3), jnp.float32)
  assert not kernels.dense_applies(x, w)
  np.testing.assert_array_equal(kernels.dense(x, w), jnp.dot(x, w))


def test_no_build_where_no_kernel_applies(monkeypatch):
  """Training shapes and bf16 never look for a compiler."""
  def fail():
    raise AssertionError("available() called")
  monkeypatch.setattr(kernels, "available", fail)
  w = jnp.ones((8, 3), jnp.float32)
  kernels.dense(jnp.ones((4, 16, 8), jnp.float32), w)  # 64 rows.
  kernels.dense(jnp.ones((2, 8), jnp.bfloat16), w)
  q, k = jnp.ones((8 * 17, 1, 2, 16)), jnp.ones((8, 2, 5, 16))
  kernels.decode_attention(q, k, k, None)  # 17 rows per (batch, head).
  kernels.decode_attention(q[:8], k, k, None, dtype=jnp.bfloat16)


def test_a_compile_error_is_reported(tmp_path, monkeypatch):
  monkeypatch.setenv("PAD_JAX_KERNEL_CACHE", str(tmp_path))
  monkeypatch.setenv("CXX", "false")  # Exists, fails.
  with pytest.raises(RuntimeError, match="building pad_jax's CPU kernels failed"):
    kernels.build()
  assert list(tmp_path.iterdir()) == []  # The temporary output is removed.


def test_constants_reach_the_compiler():
  flags = " ".join(kernels._FLAGS)  # pylint: disable=protected-access
  assert f"-DPAD_KERNELS_MAX_ROWS={kernels.MAX_ROWS} " in flags
  assert f"-DPAD_KERNELS_MASKED={kernels.MASKED!r}f" in flags


@needs_compiler
def test_env_switch_and_disabled_context():
  x, w = jnp.ones((2, 8), jnp.float32), jnp.ones((8, 3), jnp.float32)
  assert kernels.dense_applies(x, w)
  with kernels.disabled():
    assert not kernels.dense_applies(x, w)
    with kernels.disabled():
      assert not kernels.dense_applies(x, w)
    assert not kernels.dense_applies(x, w)
  assert kernels.dense_applies(x, w)


def test_env_off(monkeypatch):
  monkeypatch.setenv("PAD_JAX_CPU_KERNELS", "0")
  assert not kernels.available()


@needs_compiler
def test_the_platform_is_chosen_at_lowering():
  """Exported for CUDA from a CPU host: jnp only; for CPU: the kernels."""
  x, w = jnp.ones((4, 64), jnp.float32), jnp.ones((64, 32), jnp.float32)
  q, k = jnp.ones((4, 1, 2, 16), jnp.float32), jnp.ones((2, 2, 5, 16))
  fn = jax.jit(lambda x, w, q, k: (kernels.dense(x, w),
                                   kernels.decode_attention(q, k, k, None)))
  cuda = export.export(fn, platforms=("cuda",))(x, w, q, k).mlir_module()
  assert not any(t in cuda for t in TARGETS) and "dot_general" in cuda
  cpu = fn.lower(x, w, q, k).as_text()
  assert all(t in cpu for t in TARGETS)


@needs_compiler
@pytest.mark.parametrize("rows", [1, 3, 8, 13, 32])
@pytest.mark.parametrize("k,n", [(512, 512), (512, 2048), (2048, 512),
                                 (37, 101), (16, 1), (512, 32100), (100, 700)])
@pytest.mark.parametrize("transpose_w", [False, True])
def test_dense_matches_float64(rows, k, n, transpose_w):
  rng = _rng(rows * 7 + k)
  x = rng.randn(rows, k).astype(np.float32)
  w = rng.randn(*((n, k) if transpose_w else (k, n))).astype(np.float32)
  assert kernels.dense_applies(jnp.asarray(x), jnp.asarray(w))
  got = np.asarray(jax.jit(kernels.dense, static_argnums=2)(x, w, transpose_w))
  want = x.astype(np.float64) @ (w.T if transpose_w else w).astype(np.float64)
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.sqrt(k) * 4)


@needs_compiler
def test_dense_leading_axes_and_where_it_does_not_apply():
  rng = _rng(1)
  w = jnp.asarray(rng.randn(64, 48).astype(np.float32))
  x = jnp.asarray(rng.randn(2, 3, 64).astype(np.float32))  # 6 rows: kernel.
  assert kernels.dense_applies(x, w)
  np.testing.assert_allclose(kernels.dense(x, w), jnp.dot(x, w), atol=1e-5)
  for many in (jnp.ones((33, 64)), jnp.ones((3, 11, 64))):  # > 32: jnp.dot.
    assert not kernels.dense_applies(many, w)
  assert not kernels.dense_applies(x.astype(jnp.bfloat16), w)
  assert not kernels.dense_applies(x, w.astype(jnp.bfloat16))


@needs_compiler
def test_dense_gradients_are_jnp_dots():
  rng = _rng(2)
  x = jnp.asarray(rng.randn(4, 32).astype(np.float32))
  w = jnp.asarray(rng.randn(32, 20).astype(np.float32))
  for transpose_w, ww in ((False, w), (True, w.T)):
    loss = lambda x, w, t=transpose_w: jnp.sum(jnp.sin(kernels.dense(x, w, t)))
    ref = lambda x, w, t=transpose_w: jnp.sum(jnp.sin(jnp.dot(x, w.T if t else w)))
    for a, b in zip(jax.grad(loss, (0, 1))(x, ww), jax.grad(ref, (0, 1))(x, ww)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _cached_attention(query, key, value, bias, use_kernel):
  fn = lambda q, k, v, b: attention.cached_attention(q, k, v, b, jnp.float32,
                                                     True)
  if use_kernel:
    return np.asarray(jax.jit(fn)(query, key, value, bias))
  with kernels.disabled():
    return np.asarray(jax.jit(fn)(query, key, value, bias))


@needs_compiler
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


@needs_compiler
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


@needs_compiler
def test_attention_gradient_is_the_jnp_codes():
  rng = _rng(4)
  q = jnp.asarray(rng.randn(2, 1, 2, 16).astype(np.float32))
  k = jnp.asarray(rng.randn(2, 2, 7, 16).astype(np.float32))
  v = jnp.asarray(rng.randn(2, 2, 7, 16).astype(np.float32))
  b = jnp.asarray(rng.randn(1, 2, 1, 7).astype(np.float32))
  loss = lambda q, k, v, b: jnp.sum(jnp.tanh(
      kernels.decode_attention(q, k, v, b, jnp.float32, True)))
  assert kernels.attention_applies(q, k, v, b)
  got = jax.grad(loss, (0, 1, 2, 3))(q, k, v, b)
  with kernels.disabled():
    want = jax.grad(loss, (0, 1, 2, 3))(q, k, v, b)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@needs_compiler
def test_attention_does_not_apply_to_many_rows_or_bf16():
  q = jnp.ones((8 * 17, 1, 2, 16))  # 17 samples per input.
  k = v = jnp.ones((8, 2, 5, 16))
  assert not kernels.attention_applies(q, k, v, None)
  assert not kernels.attention_applies(q[:8].astype(jnp.bfloat16), k, v, None)
  assert not kernels.attention_applies(q[:8], k, v, None, jnp.bfloat16)
  assert kernels.attention_applies(q[:8], k, v, None)


def greedy_decode():
  """A tiny random model's greedy ids; which kernels its decode stages out."""
  module = network.Transformer(network.T5Config(**TINY))
  vocab = seqio.PassThroughVocabulary(TINY["vocab_size"], eos_id=1)
  model = models.EncoderDecoderModel(
      module, vocab, vocab, None,
      decode_fn=functools.partial(decoding.temperature_sample, topk=1))
  enc = _rng(0).randint(2, TINY["vocab_size"], (2, 10)).astype(np.int32)
  enc[1, 7:] = 0
  batch = {"encoder_input_tokens": enc,
           "decoder_input_tokens": np.zeros((2, 8), np.int32)}
  params = model.get_initial_variables(
      jax.random.PRNGKey(0), {k: v.shape for k, v in batch.items()},
      {k: v.dtype for k, v in batch.items()})["params"]
  lowered = jax.jit(lambda p, b: model.predict_batch(
      p, b, rng=jax.random.PRNGKey(3))).lower(params, batch)
  text = lowered.as_text()
  return (np.asarray(lowered.compile()(params, batch)).tolist(),
          [t for t in TARGETS if t in text])


def test_no_compiler_decodes_the_same_ids(tmp_path):
  """A host without a C++ compiler: jnp only, no build, the same ids."""
  bin_dir, cache = tmp_path / "bin", tmp_path / "cache"
  bin_dir.mkdir()
  os.symlink(PY, bin_dir / "python")  # PATH holds no c++ / g++.
  env = subprocess_env(PATH=str(bin_dir), PAD_JAX_KERNEL_CACHE=str(cache),
                       PYTHONPATH=str(REPO / "tests"))
  env.pop("CXX", None)
  code = ("import json, kernels_test; from pad_jax.student import kernels; "
          "ids, staged = kernels_test.greedy_decode(); "
          "print(json.dumps([ids, staged, kernels.available()]))")
  result = subprocess.run([PY, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600,
                          check=False)
  assert result.returncode == 0, result.stderr[-4000:]
  ids, staged, available = json.loads(result.stdout.strip().splitlines()[-1])
  assert not staged and not available
  assert not cache.exists() or not list(cache.iterdir())
  want, staged = greedy_decode()
  assert staged == (list(TARGETS) if kernels.available() else [])
  assert ids == want


def test_kernels_off_decodes_the_same_ids(monkeypatch):
  want, _ = greedy_decode()
  monkeypatch.setenv("PAD_JAX_CPU_KERNELS", "0")
  monkeypatch.setattr(kernels, "_state", {})
  ids, staged = greedy_decode()
  assert not staged
  assert ids == want
