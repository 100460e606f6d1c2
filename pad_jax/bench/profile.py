"""Where a compiled XLA:CPU computation spends its time, by network part.

`op_profile(run, hlo_text)` traces one call of `run` with `jax.profiler`,
reads the op events of the trace (XLA's executor and worker threads: CPU
time, so an op split over both cores counts both), and names every op by
the source its compiled HLO records (`metadata={op_name=...}`: the Flax
module path, e.g. `DecoderOnlyTransformer/layers_3/mlp/dot_general`). It
sums the time

* by network part (`PARTS`, the first pattern that matches the path),
* by phase: the decoding loop (`/while/body/`), the backward pass (`transpose(`
  of the forward: what `jax.grad` records), the rest,
* by kind: matrix products (`dot`, a YNNPACK dot fusion, pad-jax's skinny
  matrix-product kernel) or the rest,

and keeps the largest ops. Containers (`while`, `conditional`, `call`) are
left out, their bodies' ops are counted. The benchmarks of the decoder-only
student (`python -m pad_jax.bench train|decode --model=smollm2_135m`) put it
in the report (`profile`) and their `profile_notes`.

Nothing here imports jax at module level (see `_t5`).
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import re
import tempfile
from typing import Any, Callable, Optional

# (part, pattern on the op's source path); the first match wins.
PARTS = (
    ("output layer", r"logits_dense|[./]attend\b|lm_head|output_logits"),
    ("embedding", r"token_embedder"),
    ("attention q/k/v/o projections",
     r"attention/(?:[^/]*\._project|query|key|value|qkv|out)(?:/|$)"),
    ("key/value cache", r"_update_cache|cached_key|cached_value"),
    ("attention (scores, softmax, rotary)", r"attention"),
    ("MLP", r"/mlp(?:/|$)"),
    ("norms", r"norm"),
    ("loss", r"cross_entropy|log_softmax|loss|logsumexp"),
    ("optimizer", r"optax|adam|scale_by|weight_decay|apply_updates|optimizer"),
)
_CONTAINERS = ("while", "conditional", "call")
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?\b([a-z][\w\-]*)\((.*)$")
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def hlo_ops(hlo_text: str) -> dict[str, tuple[str, str]]:
  """{instruction name: (opcode, source path)} of a compiled module's text.

  A fusion's opcode is `fusion-dot` when it is a YNNPACK dot fusion or its
  fused computation holds a dot, a custom call's `custom-call-matmul` when
  its target is a matrix-product kernel.
  """
  ops, fused_with_dot, computation = {}, set(), None
  for line in hlo_text.splitlines():
    header = re.match(r"^\s*%?([\w.\-]+) .*\{\s*$", line)
    if header and "=" not in line.split("{")[0]:
      computation = header.group(1)
      continue
    match = _INSTRUCTION.match(line)
    if not match:
      continue
    name, opcode, rest = match.groups()
    if opcode == "dot" and computation:
      fused_with_dot.add(computation)
    source = _OP_NAME.search(rest)
    ops[name] = (opcode, source.group(1) if source else "", rest)
  kinds = {}
  for name, (opcode, source, rest) in ops.items():
    if opcode == "fusion":
      called = re.search(r"calls=%?([\w.\-]+)", rest)
      if "__ynn_fusion" in rest and "dot" in source or (
          called and called.group(1) in fused_with_dot):
        opcode = "fusion-dot"
    elif opcode == "custom-call" and "matmul" in rest.split("custom_call_target=")[-1][:60]:
      opcode = "custom-call-matmul"
    kinds[name] = (opcode, source)
  return kinds


OUTSIDE = "outside the network (loss, optimizer, sampling)"


def part_of(source: str) -> str:
  """The network part of an op's source path (`PARTS`), else `OUTSIDE`.

  t5x's loss, optimizer update and sampling run outside the Flax module, so
  their ops carry no module path (`jvp()/exp`).
  """
  for part, pattern in PARTS:
    if re.search(pattern, source):
      return part
  return OUTSIDE


def phase_of(source: str) -> str:
  if "/while/body/" in source or source.startswith("while/body/"):
    return "decoding loop"
  if "transpose(" in source:
    return "backward"
  return "forward / outside the loop"


def trace_op_times(run: Callable[[], Any],
                   trace_dir: Optional[str] = None) -> dict[str, list[float]]:
  """{event name: [seconds, count]} of the XLA threads in a trace of `run()`."""
  import jax  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as tmp:
    directory = trace_dir or tmp
    jax.profiler.start_trace(directory)
    try:
      run()
    finally:
      jax.profiler.stop_trace()
    paths = sorted(glob.glob(f"{directory}/**/*.trace.json.gz", recursive=True))
    if not paths:
      raise RuntimeError(f"{directory}: jax.profiler wrote no trace")
    with gzip.open(paths[-1]) as f:
      events = json.load(f)["traceEvents"]
  threads = {(e.get("pid"), e.get("tid")) for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"
             and e.get("args", {}).get("name", "").startswith("tf_XLA")}
  times: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
  for e in events:
    if e.get("ph") == "X" and (e.get("pid"), e.get("tid")) in threads:
      times[e["name"]][0] += e.get("dur", 0) / 1e6
      times[e["name"]][1] += 1
  return dict(times)


def summarize(times: dict[str, list[float]], ops: dict[str, tuple[str, str]],
              top: int = 8) -> dict[str, Any]:
  """Shares of the traced op time by part, phase and kind, and the top ops."""
  parts, phases = collections.Counter(), collections.Counter()
  kinds, rows = collections.Counter(), []
  for name, (seconds, count) in times.items():
    if name not in ops or ops[name][0] in _CONTAINERS:
      continue  # executor bookkeeping, or a loop whose body is counted
    opcode, source = ops[name]
    matmul = opcode in ("dot", "fusion-dot", "custom-call-matmul")
    parts[part_of(source)] += seconds
    phases[phase_of(source)] += seconds
    kinds["matrix products" if matmul else "other ops"] += seconds
    rows.append((seconds, name, opcode, count, source))
  total = sum(parts.values())
  if not total:
    raise RuntimeError("the trace has no op of the compiled module")

  def shares(counter):
    return {k: round(v / total, 3) for k, v in counter.most_common()}

  rows.sort(reverse=True)
  return {
      "op_cpu_seconds": float(f"{total:.4g}"),  # a tiny call's ops take microseconds
      "by_part": shares(parts), "by_phase": shares(phases),
      "by_kind": shares(kinds),
      "top_ops": [{"op": name, "opcode": opcode, "share": round(s / total, 3),
                   "calls": count, "source": re.sub(r"^jit\([^)]*\)/", "", source)}
                  for s, name, opcode, count, source in rows[:top]],
  }


def op_profile(run: Callable[[], Any], hlo_text: str, top: int = 8) -> dict[str, Any]:
  """`summarize` of one traced call of `run` (compiled from `hlo_text`)."""
  return summarize(trace_op_times(run), hlo_ops(hlo_text), top)


def notes(profile: dict[str, Any]) -> list[str]:
  """Two lines for `profile_notes`: the parts and the largest ops."""
  def pct(shares, limit=6):
    return ", ".join(f"{k} {v:.0%}" for k, v in list(shares.items())[:limit])
  ops = "; ".join(f"{o['op']} ({o['opcode']}, {o['share']:.0%}, {o['source'][:90]})"
                  for o in profile["top_ops"][:4])
  return [
      f"Profile (jax.profiler trace of one call, {profile['op_cpu_seconds']:.3g} "
      f"CPU-s of XLA ops): by part {pct(profile['by_part'])}; by phase "
      f"{pct(profile['by_phase'])}; {pct(profile['by_kind'])}.",
      f"Largest ops: {ops}.",
  ]
