"""Shared pieces of the `train` and `decode` benchmarks (T5 shapes, FLOPs, timing).

Timing on a shared CPU: implementations run in turn, round by round, and
speedups are medians of same-round ratios; the fp32 matmul peak is probed
once per round too, so MFU compares FLOP/s measured under the same load.

Nothing here imports jax or torch at module level: the benchmarks set
`XLA_FLAGS` / thread counts from their flags before the first import.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from typing import Any, Callable, Mapping, Optional


@dataclasses.dataclass(frozen=True)
class Shape:
  """An encoder-decoder T5 shape (the fields of `network.T5Config`)."""

  vocab_size: int
  emb_dim: int
  num_heads: int
  num_encoder_layers: int
  num_decoder_layers: int
  head_dim: int
  mlp_dim: int
  mlp_activations: tuple[str, ...] = ("relu",)
  logits_via_embedding: bool = True


SHAPES = {
    # Salesforce/codet5-small (gin_configs/models/codet5_small.gin).
    "codet5_small": Shape(vocab_size=32100, emb_dim=512, num_heads=8,
                          num_encoder_layers=6, num_decoder_layers=6,
                          head_dim=64, mlp_dim=2048),
    # A seconds-long smoke test.
    "tiny": Shape(vocab_size=512, emb_dim=64, num_heads=4,
                  num_encoder_layers=2, num_decoder_layers=2, head_dim=16,
                  mlp_dim=128),
}


def pad_config(shape: Shape, **overrides: Any):
  """`pad_jax.student.network.T5Config` for `shape` (fp32)."""
  from pad_jax.student import network  # pylint: disable=import-outside-toplevel
  return network.T5Config(**dataclasses.asdict(shape), dtype="float32",
                          **overrides)


def t5x_config(shape: Shape, **overrides: Any):
  """`t5x.examples.t5.network.T5Config` for `shape` (fp32)."""
  from t5x.examples.t5 import network  # pylint: disable=import-outside-toplevel
  return network.T5Config(**dataclasses.asdict(shape), dtype="float32",
                          **overrides)


def hf_config(shape: Shape, dropout_rate: float):
  """The transformers `T5Config` of the same model."""
  import transformers  # pylint: disable=import-outside-toplevel
  gated = len(shape.mlp_activations) == 2
  return transformers.T5Config(
      vocab_size=shape.vocab_size, d_model=shape.emb_dim, d_kv=shape.head_dim,
      d_ff=shape.mlp_dim, num_layers=shape.num_encoder_layers,
      num_decoder_layers=shape.num_decoder_layers, num_heads=shape.num_heads,
      feed_forward_proj="gated-gelu" if gated else "relu",
      tie_word_embeddings=shape.logits_via_embedding,
      dropout_rate=dropout_rate, pad_token_id=0, eos_token_id=2,
      decoder_start_token_id=0)


def _layer_flops(shape: Shape) -> dict[str, int]:
  """Matmul FLOPs (2 per multiply-add) per token for each layer part."""
  d, inner, ff = shape.emb_dim, shape.num_heads * shape.head_dim, shape.mlp_dim
  mlp = 2 * d * ff * (len(shape.mlp_activations) + 1)
  return {"attention_proj": 2 * 4 * d * inner, "half_proj": 2 * 2 * d * inner,
          "mlp": mlp, "inner": inner, "logits": 2 * d * shape.vocab_size}


def forward_flops(shape: Shape, batch: int, inputs: int, targets: int) -> dict:
  """Model FLOPs of one teacher-forced forward pass (no embedding matmul).

  Returns:
    `{"encoder", "decoder", "logits", "attention", "total"}` in FLOPs.
  """
  f = _layer_flops(shape)
  enc_tokens, dec_tokens = batch * inputs, batch * targets
  encoder = enc_tokens * shape.num_encoder_layers * (f["attention_proj"] + f["mlp"])
  decoder = shape.num_decoder_layers * (
      dec_tokens * (f["attention_proj"] + f["half_proj"] + f["mlp"]) +
      enc_tokens * f["half_proj"])  # cross-attention keys/values
  attention = 2 * 2 * f["inner"] * (
      shape.num_encoder_layers * enc_tokens * inputs +
      shape.num_decoder_layers * dec_tokens * (targets + inputs))
  logits = dec_tokens * f["logits"]
  return {"encoder": encoder, "decoder": decoder, "logits": logits,
          "attention": attention,
          "total": encoder + decoder + logits + attention}


def decode_flops(shape: Shape, batch: int, inputs: int, steps: int,
                 beams: int = 1) -> int:
  """Model FLOPs of encoding + `steps` cached decoding steps.

  Encoding and the cross-attention keys/values are computed once per input;
  each step runs `batch * beams` rows (greedy: `beams=1`).
  """
  f = _layer_flops(shape)
  enc_tokens = batch * inputs
  encode = enc_tokens * shape.num_encoder_layers * (f["attention_proj"] + f["mlp"])
  encode += 2 * 2 * f["inner"] * shape.num_encoder_layers * enc_tokens * inputs
  cross_kv = shape.num_decoder_layers * enc_tokens * f["half_proj"]
  per_token = (shape.num_decoder_layers *
               (f["attention_proj"] + f["half_proj"] + f["mlp"]) + f["logits"])
  # Attention over the cached prefix (on average steps/2) and the inputs.
  attention = shape.num_decoder_layers * 2 * 2 * f["inner"] * (
      steps / 2 + inputs)
  return int(encode + cross_kv + batch * beams * steps * (per_token + attention))


def matmul_probe(n: int = 1024, repeats: int = 4) -> Callable[[], float]:
  """A callable measuring fp32 matmul FLOP/s now (best of `repeats` n^3 jax dots).

  Run it between the timed calls: on a shared CPU the peak moves with the
  load, and MFU is only meaningful against the peak of the same moments.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  mm = jax.jit(lambda x: x @ x)
  mm(a).block_until_ready()

  def probe() -> float:
    best = min(_timed(lambda: mm(a).block_until_ready()) for _ in range(repeats))
    return 2 * n**3 / best

  return probe


def bandwidth_probe(rows: int = 8, repeats: int = 8) -> dict[str, float]:
  """Bytes/s read from memory now: by a matrix-vector product, and by a sum.

  Both read a CodeT5-sized 32100 x 512 f32 matrix (66 MB, larger than the
  caches), best of `repeats`: `matvec` as `rows` vectors times it (the
  decoder's weights and output embedding at small batch, through XLA:CPU's
  dot), `sum` as a plain reduction (what the memory system streams).
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  w = jax.random.normal(jax.random.PRNGKey(0), (32100, 512), jnp.float32)
  x = jnp.ones((rows, 512), jnp.float32)
  result = {}
  for name, fn in (("matvec", jax.jit(lambda x, w: x @ w.T)),
                   ("sum", jax.jit(lambda x, w: jnp.sum(w)))):
    fn(x, w).block_until_ready()
    best = min(_timed(lambda: fn(x, w).block_until_ready()) for _ in range(repeats))
    result[name] = w.size * 4 / best
  return result


def _timed(fn: Callable[[], Any]) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def interleaved(fns: Mapping[str, Callable[[], Any]], rounds: int,
                probe: Optional[Callable[[], float]] = None) -> dict:
  """Runs each fn once per round, in turn, so load changes hit all alike.

  Returns:
    name -> {"median_s", "min_s", "max_s", "times_s"}, and with `probe` also
    "peak_flops": the median of one probe per round.
  """
  times = {name: [] for name in fns}
  peaks = []
  if rounds < 1:  # Warm-up rounds may be none.
    return {}
  for _ in range(rounds):
    for name, fn in fns.items():
      times[name].append(_timed(fn))
    if probe is not None:
      peaks.append(probe())
  result = {name: {"median_s": statistics.median(t), "min_s": min(t),
                   "max_s": max(t), "times_s": [round(x, 4) for x in t]}
            for name, t in times.items()}
  if peaks:
    result["peak_flops"] = statistics.median(peaks)
  return result


def paired_speedup(times: Mapping[str, Any], baseline: str, impl: str) -> float:
  """Median over rounds of baseline_time / impl_time (same-round pairs)."""
  return statistics.median(
      b / i for b, i in zip(times[baseline]["times_s"], times[impl]["times_s"]))


def timing_entry(t: Mapping[str, Any], seconds_key: str, tokens: int,
                 flops: float, peak: float) -> dict[str, Any]:
  """One implementation's report entry from `interleaved`'s timings.

  `spread` is (max - min) / median of the rounds: how much one round can
  be trusted on this machine at this moment.
  """
  seconds = t["median_s"]
  return {seconds_key: round(seconds, 4), "min_seconds": round(t["min_s"], 4),
          "max_seconds": round(t["max_s"], 4),
          "spread": round((t["max_s"] - t["min_s"]) / seconds, 3),
          "times_s": t["times_s"], "tokens_per_s": round(tokens / seconds, 1),
          "mfu": round(flops / seconds / peak, 4)}


def load_average() -> float:
  """The 1-minute load average now (take it before building anything)."""
  return round(os.getloadavg()[0], 2)


def machine(load_at_start: Optional[float] = None) -> dict[str, Any]:
  """What the numbers were measured on.

  Args:
    load_at_start: `load_average()` taken when the benchmark started (the
      quiet-machine criterion); the load at the end is recorded too.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  device = jax.devices()[0]
  return {"jax_backend": jax.default_backend(),
          "jax_device": getattr(device, "device_kind", str(device)),
          "cpus": len(os.sched_getaffinity(0)),
          "torch_threads": torch.get_num_threads(),
          "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
          "load_average_1m_at_start": load_at_start,
          "load_average_1m": load_average(),
          "xla_flags": os.environ.get("XLA_FLAGS", "")}


def set_thread_env() -> None:
  """Before torch starts: OpenMP threads sleep instead of spinning when idle.

  With more runnable threads than cores (a shared machine), libgomp's
  default spin-waiting makes torch steps many times slower; passive waiting
  is the fair setting for the baseline. An explicit OMP_WAIT_POLICY wins.
  """
  os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
  os.environ.setdefault("JAX_PLATFORMS", "cpu")


def write_report(path: str, report: Mapping[str, Any]) -> None:
  """Writes the JSON report atomically and prints it."""
  from pad_jax import atomic  # pylint: disable=import-outside-toplevel
  atomic.write_json(path, report)
  print(json.dumps(report, indent=2))
