"""CPU kernels for decoding, as XLA FFI custom calls, behind two functions.

A decoding step multiplies a few rows (the batch) by every decoder weight and
by the output embedding, and attends over the key/value caches; on CPU its
time is reading those arrays (docs/measured.md). The network calls two
functions here and never branches on the kernels:

* `dense(x, w)`: `x @ w`; by `skinny_matmul.cc` for at most `MAX_ROWS` rows
  of x, reading w once, in address order, from every core (XLA:CPU's
  library GEMM spends ~0.1 ms of thread hand-off on each 1 MB projection at
  these shapes).
* `decode_attention(query, key, value, bias)`: softmax(q.k + bias).v against
  a heads-major cache; by `decode_attention.cc` for at most `MAX_QUERY_ROWS`
  query rows per (batch, head), reading only the positions the bias leaves
  unmasked: the self-attention cache is filled up to the current step, so a
  decoding call reads about half of it instead of all of it at every step.

Each holds its own applicability test (float32 operands, a decoding step's
shapes, decided at trace time) and its own fallback, the jnp code, which is
the reference: the kernel's values equal it up to the order of the float32
sums, and its derivatives are the reference's (`custom_jvp`). Where the test
passes both are staged out with `lax.platform_dependent`: the kernel runs
where the computation is lowered for CPU, the jnp code everywhere else
(GPU/TPU, AOT export for another platform), whatever the default backend.

The kernels are optional. They are compiled on the first trace that would
use them, for the machine they run on (`-march=native`, the C++ compiler
`$CXX` or `c++`, XLA's FFI headers from jaxlib), into a cache directory
(`$PAD_JAX_KERNEL_CACHE`, default `~/.cache/pad_jax/kernels`), keyed by the
sources, jax, the compiler (path, size, mtime), its flags and the CPU's
features. Without a compiler (one warning), with `PAD_JAX_CPU_KERNELS=0`, or
inside `disabled()`, only the jnp code is traced. The constants the C++ needs
(`MAX_ROWS`, `MASKED`) are defined here and passed as `-D` flags.
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
from jax import lax
import jax.numpy as jnp

# Rows of x per `dense` kernel call (taken 8 at a time: the register tile).
MAX_ROWS = 32
# Query rows per (batch, head) above which the cache is better read by the
# batched products (each row re-reads the pair's keys and values from cache).
MAX_QUERY_ROWS = 16
# A bias at or below this marks a masked position, which the attention kernel
# does not read (the network's masks add -1e10: exp underflows to exactly 0).
MASKED = -1e9

_MATMUL = "pad_skinny_matmul_f32"
_ATTENTION = "pad_decode_attention_f32"
_SOURCES = tuple(pathlib.Path(__file__).with_name(name)
                 for name in ("skinny_matmul.cc", "decode_attention.cc"))
_HEADERS = (pathlib.Path(__file__).with_name("common.h"),)
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w",
          f"-DPAD_KERNELS_MAX_ROWS={MAX_ROWS}",
          f"-DPAD_KERNELS_MASKED={MASKED!r}f")
_lock = threading.Lock()
_state: dict[str, Any] = {}  # "ok": whether they load (decided once).
_registered: dict[str, Any] = {}  # The library, once registered with XLA.
_off = threading.local()


# ------------------------------------------------------------ the library ---


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


def _compiler_identity(cxx: str) -> str:
  """The compiler's path and its file's size and mtime (no subprocess)."""
  real = os.path.realpath(cxx)
  stat = os.stat(real)
  return f"{cxx} {real} {stat.st_size} {stat.st_mtime_ns}"


def build(force: bool = False) -> pathlib.Path:
  """Compiles the kernels (once per source/jaxlib/compiler/CPU); returns the .so.

  Raises:
    RuntimeError: no C++ compiler, or compilation failed (with its output).
  """
  cxx = _compiler()
  if cxx is None:
    raise RuntimeError(
        f"no C++ compiler ({os.environ.get('CXX', 'c++')}) on PATH to build "
        "pad_jax's optional CPU kernels (set $CXX, or PAD_JAX_CPU_KERNELS=0)")
  parts = [f.read_bytes() for f in _SOURCES + _HEADERS] + [
      x.encode() for x in (jax.lib.__version__, jax.__version__,
                           _compiler_identity(cxx), " ".join(_FLAGS),
                           platform.machine(), _cpu_features())]
  key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
  out = cache_dir() / f"pad_kernels-{key}.so"
  if out.exists() and not force:
    return out
  out.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
  os.close(fd)
  cmd = [cxx, *_FLAGS, f"-I{jax.ffi.include_dir()}", *map(str, _SOURCES), "-o", tmp]
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
    logging.warning("pad_jax CPU kernels unavailable, using the jnp code: %s",
                    e)
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


def _usable(*arrays: jax.Array) -> bool:
  """float32 operands, not `disabled()`, the kernels built (at trace time).

  Called after the shape tests, so that only a trace that would use a
  kernel builds them.
  """
  return (not getattr(_off, "depth", 0)
          and all(a.dtype == jnp.float32 for a in arrays) and available())


# ------------------------------------------------------------------ dense ---


def dense_applies(x: jax.Array, w: jax.Array) -> bool:
  """Whether `dense(x, w)` stages out the kernel (decided at trace time)."""
  rows = x.size // x.shape[-1] if x.ndim and x.shape[-1] else 0
  return 0 < rows <= MAX_ROWS and w.ndim == 2 and _usable(x, w)


def dense(x: jax.Array, w: jax.Array, transpose_w: bool = False) -> jax.Array:
  """`x @ w` (`transpose_w`: `x @ w.T`) over x's last axis; any leading axes.

  `jnp.dot`, or where `dense_applies` and the computation runs on CPU, the
  kernel (same values up to the order of the float32 sums). The kernel reads
  a `[K, N]` w at about twice the rate of a `[N, K]` one (`transpose_w`), so
  a decoding loop gets a transposed copy made once before it (XLA does not
  hoist a transpose out of the loop).
  """
  reference = lambda x, w: jnp.dot(x, w.T if transpose_w else w)
  if not dense_applies(x, w):
    return reference(x, w)
  y = lax.platform_dependent(
      x.reshape((-1, x.shape[-1])), w,
      cpu=lambda x, w: _skinny(x, w, transpose_w), default=reference)
  return y.reshape(x.shape[:-1] + y.shape[-1:])


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


# -------------------------------------------------------------- attention ---


def attention_applies(query: jax.Array, key: jax.Array, value: jax.Array,
                      bias: Optional[jax.Array],
                      dtype: Any = jnp.float32) -> bool:
  """Whether `decode_attention` stages out the kernel (at trace time)."""
  rows = query.shape[0] // key.shape[0] * query.shape[1]
  return (rows <= MAX_QUERY_ROWS and jnp.dtype(dtype) == jnp.float32
          and _usable(query, key, value, *(() if bias is None else (bias,))))


def attention_reference(query: jax.Array, key: jax.Array, value: jax.Array,
                        bias: Optional[jax.Array], dtype: Any = jnp.float32,
                        float32_logits: bool = False) -> jax.Array:
  """`decode_attention` in jnp: its fallback and its kernel's derivative.

  The numerics of `t5x.examples.t5.layers.dot_product_attention` without
  dropout, keys and values heads-major, shared by `n` consecutive query
  rows (see `decode_attention`).
  """
  batch = key.shape[0]
  query = query.reshape((batch, query.shape[0] // batch) + query.shape[1:])
  if float32_logits:
    query = query.astype(jnp.float32)
    key = key.astype(jnp.float32)
  logits = jnp.einsum("bnqhd,bhkd->bhnqk", query, key)
  if bias is not None:
    logits = logits + jnp.expand_dims(bias, 2).astype(logits.dtype)
  weights = jax.nn.softmax(logits).astype(dtype)
  out = jnp.einsum("bhnqk,bhkd->bnqhd", weights, value)
  return out.reshape((-1,) + out.shape[2:])


def decode_attention(query: jax.Array, key: jax.Array, value: jax.Array,
                     bias: Optional[jax.Array], dtype: Any = jnp.float32,
                     float32_logits: bool = False) -> jax.Array:
  """softmax(q.k + bias).v against a heads-major key/value cache.

  `attention_reference`, or where `attention_applies` and the computation
  runs on CPU, the kernel: the same values, reading only the cache positions
  the bias leaves unmasked (a bias <= `MASKED`), each once for all the query
  rows that share it.

  Args:
    query: `[batch * n, q_len, heads, head_dim]`: the `n` beams or samples
      of one input are consecutive rows and share its keys and values.
    key: `[batch, heads, kv_len, head_dim]`.
    value: `[batch, heads, kv_len, head_dim]`.
    bias: broadcastable to `[batch, heads, q_len, kv_len]`, or None.
    dtype: the attention weights' dtype.
    float32_logits: compute logits and softmax in float32.

  Returns:
    `[batch * n, q_len, heads, head_dim]`.
  """
  reference = functools.partial(attention_reference, dtype=dtype,
                                float32_logits=float32_logits)
  if not attention_applies(query, key, value, bias, dtype):
    return reference(query, key, value, bias)

  def kernel(query, key, value, bias):
    if bias is None:
      bias = jnp.zeros((1, 1, 1, key.shape[2]), jnp.float32)
    return _attention(query, key, value, bias)

  return lax.platform_dependent(query, key, value, bias, cpu=kernel,
                                default=reference)


@jax.custom_jvp
def _attention(query: jax.Array, key: jax.Array, value: jax.Array,
               bias: jax.Array) -> jax.Array:
  """The kernel on `decode_attention`'s shapes (float32, bias an array)."""
  batch, heads, length, _ = key.shape
  n, q_len = query.shape[0] // batch, query.shape[1]
  bias = jnp.broadcast_to(bias, (batch, heads, q_len, length))
  # Row (sample i, position j) of a batch entry uses bias row j.
  bias = jnp.broadcast_to(bias[:, :, None], (batch, heads, n, q_len, length))
  rows = query.reshape((batch, n * q_len) + query.shape[2:])
  out = jax.ffi.ffi_call(
      _ATTENTION, jax.ShapeDtypeStruct(rows.shape, jnp.float32),
      vmap_method="sequential")(
          rows, key, value, bias.reshape((batch, heads, n * q_len, length)))
  return out.reshape(query.shape)


@_attention.defjvp
def _attention_jvp(primals, tangents):
  return (_attention(*primals),
          jax.jvp(attention_reference, primals, tangents)[1])
