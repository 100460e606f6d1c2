"""CPU kernels for decoding, as XLA FFI custom calls.

A decoding step multiplies a few rows (the batch) by every decoder weight and
by the output embedding, and attends over the key/value caches; on CPU its
time is reading those arrays (docs/measured.md). Two kernels:

* `matmul` (skinny_matmul.cc): `x @ w` for at most 8 rows of x, reading w
  once, in address order, from both cores; XLA:CPU's library GEMM spends
  ~0.1 ms of thread hand-off on each 1 MB projection at these shapes.
* `attention` (decode_attention.cc): softmax(q.k + bias).v against a
  heads-major cache, reading only the positions the bias leaves unmasked: the
  self-attention cache is filled up to the current step, so a decoding call
  reads about half of it instead of all of it at every step.

Both are compiled on first use for the machine they run on (`-march=native`,
the C++ compiler `$CXX` or `c++`, XLA's FFI headers from jaxlib) into a cache
directory (`$PAD_JAX_KERNEL_CACHE`, default `~/.cache/pad_jax/kernels`),
keyed by the sources, jax, the compiler, its flags and the CPU's features.

`pad_jax.student.network` calls them where they apply (default backend CPU, float32,
a decoding step's shapes) and runs the plain jnp code otherwise: on GPU/TPU,
for training batches, and wherever the kernels cannot be built (no compiler:
one warning, then jnp). Set `PAD_JAX_CPU_KERNELS=0` to turn them off. Their
values equal the jnp code's up to the order of the float32 sums, and their
derivatives are the jnp code's (`custom_jvp`), so differentiating through
them works as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
import threading
from typing import Any, Optional

from absl import logging
import jax
import jax.numpy as jnp

MAX_ROWS = 32  # Rows of x per call (8 at a time: the register tile).
_MATMUL = "pad_skinny_matmul_f32"
_ATTENTION = "pad_decode_attention_f32"
_SOURCES = tuple(pathlib.Path(__file__).with_name(name)
                 for name in ("skinny_matmul.cc", "decode_attention.cc"))
_HEADERS = (pathlib.Path(__file__).with_name("common.h"),)
_lock = threading.Lock()
_state: dict[str, Any] = {}  # "ok": whether they load (decided once).
_registered: dict[str, Any] = {}  # The library, once registered with XLA.
_off = threading.local()


def cache_dir() -> pathlib.Path:
  """Where compiled kernels are kept."""
  root = os.environ.get("PAD_JAX_KERNEL_CACHE")
  if root:
    return pathlib.Path(root)
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "pad_jax" / "kernels"


def _cpu_features() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith(("flags", "Features")):
          return line
  except OSError:
    pass
  return platform.processor()


def _compiler() -> Optional[str]:
  return shutil.which(os.environ.get("CXX", "c++"))


def build(force: bool = False) -> pathlib.Path:
  """Compiles the kernels (once per source/jaxlib/compiler/CPU); returns the .so.

  Raises:
    RuntimeError: no C++ compiler, or compilation failed (with its output).
  """
  cxx = _compiler()
  if cxx is None:
    raise RuntimeError(f"no C++ compiler ({os.environ.get('CXX', 'c++')}) "
                       "on PATH to build pad_jax's CPU kernels")
  version = subprocess.run([cxx, "--version"], capture_output=True, text=True,
                           check=False).stdout
  flags = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w"]
  parts = [f.read_bytes() for f in _SOURCES + _HEADERS] + [
      x.encode() for x in (jax.lib.__version__, jax.__version__, version,
                           " ".join(flags), platform.machine(),
                           _cpu_features())]
  key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
  out = cache_dir() / f"pad_kernels-{key}.so"
  if out.exists() and not force:
    return out
  out.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
  os.close(fd)
  cmd = [cxx, *flags, f"-I{jax.ffi.include_dir()}", *map(str, _SOURCES), "-o", tmp]
  try:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
      raise RuntimeError(f"building pad_jax's CPU kernels failed "
                         f"({' '.join(cmd)}):\n{result.stderr[-4000:]}")
    os.replace(tmp, out)
    logging.info("compiled pad_jax's CPU kernels: %s", out)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  return out


def available() -> bool:
  """Whether the kernels are built and registered (builds on first call)."""
  with _lock:
    if "ok" not in _state:
      _state["ok"] = _load()
    return _state["ok"]


def _load() -> bool:
  if os.environ.get("PAD_JAX_CPU_KERNELS", "1").strip().lower() in (
      "0", "false", "no", "off"):
    return False
  if _registered:  # XLA takes a target name once per process.
    return True
  try:
    library = ctypes.cdll.LoadLibrary(str(build()))
    for target, symbol in ((_MATMUL, library.PadSkinnyMatmulF32),
                           (_ATTENTION, library.PadDecodeAttentionF32)):
      jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(symbol),
                                  platform="cpu")
    _registered["library"] = library  # Keeps it loaded.
    return True
  except (RuntimeError, OSError) as e:
    logging.warning("pad_jax CPU kernels unavailable, using jnp.dot: %s", e)
    return False


@contextlib.contextmanager
def disabled():
  """Functions traced inside (on this thread) use the jnp code, not the kernels.

  For A/B measurements (`python -m pad_jax.bench decode`'s `pad_jnp`): a
  jitted function keeps what it was traced with.
  """
  depth = getattr(_off, "depth", 0)
  _off.depth = depth + 1
  try:
    yield
  finally:
    _off.depth = depth


def _on_cpu(*arrays: jax.Array) -> bool:
  """float32 operands, CPU default backend, kernels built (at trace time)."""
  return (not getattr(_off, "depth", 0)
          and all(a.dtype == jnp.float32 for a in arrays)
          and jax.default_backend() == "cpu" and available())


def applies(x: jax.Array, w: jax.Array) -> bool:
  """Whether `matmul(x, w)` would run the kernel (decided at trace time)."""
  rows = x.size // x.shape[-1] if x.ndim else 0
  return 0 < rows <= MAX_ROWS and w.ndim == 2 and _on_cpu(x, w)


def matmul(x: jax.Array, w: jax.Array, transpose_w: bool = False) -> jax.Array:
  """`x @ w` (`transpose_w`: `x @ w.T`) over x's last axis; any leading axes.

  The kernel where `applies`, else `jnp.dot` (same values up to the order of
  the float32 sums). The kernel reads a `[K, N]` w at about twice the rate
  of a `[N, K]` one (`transpose_w`), so a decoding loop gets a transposed
  copy made once before it (XLA does not hoist a transpose out of the loop).
  """
  if not applies(x, w):
    return jnp.dot(x, w.T if transpose_w else w)
  lead = x.shape[:-1]
  y = _skinny(x.reshape((-1, x.shape[-1])), w, transpose_w)
  return y.reshape(lead + y.shape[-1:])


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _skinny(x: jax.Array, w: jax.Array, transpose_w: bool) -> jax.Array:
  n = w.shape[0] if transpose_w else w.shape[1]
  return jax.ffi.ffi_call(
      _MATMUL, jax.ShapeDtypeStruct((x.shape[0], n), jnp.float32),
      vmap_method="sequential")(x, w, transpose_w=transpose_w)


@_skinny.defjvp
def _skinny_jvp(transpose_w, primals, tangents):
  x, w = primals
  dx, dw = tangents
  wt = (lambda a: a.T) if transpose_w else (lambda a: a)
  return _skinny(x, w, transpose_w), jnp.dot(dx, wt(w)) + jnp.dot(x, wt(dw))


# Query rows per (batch, head) above which the cache is better read by the
# batched products (each row re-reads the pair's keys and values from cache).
MAX_QUERY_ROWS = 16


def attention_applies(query: jax.Array, key: jax.Array, value: jax.Array,
                      bias: Optional[jax.Array]) -> bool:
  """Whether `attention` would run the kernel (decided at trace time)."""
  rows = query.shape[0] // key.shape[0] * query.shape[1]
  return (rows <= MAX_QUERY_ROWS
          and _on_cpu(query, key, value, *(() if bias is None else (bias,))))


def attention(query: jax.Array, key: jax.Array, value: jax.Array,
              bias: Optional[jax.Array]) -> jax.Array:
  """`network.cached_attention`'s values in float32, by the kernel.

  Args:
    query: `[batch * n, q_len, heads, head_dim]`.
    key: `[batch, heads, kv_len, head_dim]`.
    value: `[batch, heads, kv_len, head_dim]`.
    bias: broadcastable to `[batch, heads, q_len, kv_len]`, or None; a
      position whose bias is <= -1e9 (the masks' -1e10) is not read.

  Returns:
    `[batch * n, q_len, heads, head_dim]`.
  """
  batch, heads, length, _ = key.shape
  n, q_len = query.shape[0] // batch, query.shape[1]
  if bias is None:
    bias = jnp.zeros((1, 1, 1, length), jnp.float32)
  bias = jnp.broadcast_to(bias, (batch, heads, q_len, length))
  # Row (sample i, position j) of a batch entry uses bias row j.
  bias = jnp.broadcast_to(bias[:, :, None], (batch, heads, n, q_len, length))
  out = _attention(query.reshape((batch, n * q_len) + query.shape[2:]), key,
                   value, bias.reshape((batch, heads, n * q_len, length)))
  return out.reshape(query.shape)


def attention_reference(query: jax.Array, key: jax.Array, value: jax.Array,
                        bias: jax.Array) -> jax.Array:
  """What `_attention` computes, in jnp (where its derivative comes from).

  Shapes as `_attention`'s: query `[batch, rows, heads, head_dim]`, bias
  `[batch, heads, rows, kv_len]`.
  """
  logits = jnp.einsum("brhd,bhkd->bhrk", query, key) + bias
  return jnp.einsum("bhrk,bhkd->brhd", jax.nn.softmax(logits), value)


@jax.custom_jvp
def _attention(query: jax.Array, key: jax.Array, value: jax.Array,
               bias: jax.Array) -> jax.Array:
  return jax.ffi.ffi_call(
      _ATTENTION, jax.ShapeDtypeStruct(query.shape, jnp.float32),
      vmap_method="sequential")(query, key, value, bias)


@_attention.defjvp
def _attention_jvp(primals, tangents):
  return (_attention(*primals),
          jax.jvp(attention_reference, primals, tangents)[1])
