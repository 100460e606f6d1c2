"""`python -m pad_jax.bench train|decode --model=tiny_decoder`: the decoder-only
student against transformers' LlamaForCausalLM, at tiny size.

Timings are never asserted (the CPU is shared); the reports' structure and
the greedy ids' agreement with Hugging Face are.
"""

import json
import subprocess
import sys

import pytest

from pad_jax.bench import profile as bench_profile

TINY = ["--model=tiny_decoder", "--batch_size=2", "--inputs_length=8"]


@pytest.mark.parametrize("name,extra,impls", [
    ("decode", ["--repeats=1", "--decode_length=12"], ("pad", "hf")),
    ("train", ["--steps=1", "--warmup=0", "--targets_length=8"], ("pad", "torch")),
])
def test_bench_decoder_tiny(tmp_path, name, extra, impls):
  out = tmp_path / f"{name}.json"
  result = subprocess.run(
      [sys.executable, "-m", "pad_jax.bench", name, *TINY, f"--output={out}", *extra],
      timeout=600, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report["benchmark"] == name and report["model"] == "tiny_decoder"
  for impl in impls:
    assert report[impl]["tokens_per_s"] > 0
    assert len(report[impl]["times_s"]) == report.get("repeats", report.get("steps"))
    assert report[impl]["spread"] >= 0
  key = "speedup_vs_hf" if name == "decode" else "speedup_vs_torch"
  assert report[key] > 0 and report["mfu"] > 0
  assert report["machine"]["load_average_1m_at_start"] is not None
  # The trace of one pad call, its ops named by the network part they run.
  profile = report["profile"]
  assert profile["op_cpu_seconds"] > 0
  # (A tiny model's call takes milliseconds: its shares are noise, not checked.)
  assert abs(sum(profile["by_part"].values()) - 1) < 0.01
  assert set(profile["by_part"]) <= {p for p, _ in bench_profile.PARTS} | {bench_profile.OUTSIDE}
  assert set(profile["by_kind"]) <= {"matrix products", "other ops"}
  if name == "train":
    assert set(profile["by_phase"]) >= {"backward", "forward / outside the loop"}
  else:
    assert "decoding loop" in profile["by_phase"]
  assert any(o["source"] for o in profile["top_ops"])  # (XLA's own copies have none)
  assert report["profile_notes"][0].startswith("Profile (jax.profiler trace")
  if name == "decode":
    assert report["ids_equal_hf"] is True and report["pad"]["ids_agreement_hf"] == 1.0
    assert report["tokens_per_call"] == 2 * 12
  else:
    assert report["tokens_per_step"] == 2 * (8 + 8)
