"""Smoke tests of `python -m pad_jax.bench train|decode|stepwise` at tiny size (slow).

Timings are never asserted (the CPU is shared); the reports' structure and
the ids' agreement with Hugging Face (greedy and beam search) are.
"""

import json
import subprocess
import sys

import pytest

SHORT = ["--inputs_length=16"]


@pytest.mark.slow
@pytest.mark.parametrize("name,extra,impls", [
    ("decode", ["--repeats=1", "--decode_length=16", *SHORT],
     ("pad", "pad_jnp", "t5x", "hf")),
    ("decode", ["--decode=beam", "--beam_size=4", "--repeats=1",
                "--decode_length=16", *SHORT], ("pad", "hf")),
    ("train", ["--steps=2", "--warmup=0", "--targets_length=16", *SHORT],
     ("pad", "t5x", "torch")),
])
def test_bench_tiny(tmp_path, name, extra, impls):
  out = tmp_path / f"{name}.json"
  subprocess.run([sys.executable, "-m", "pad_jax.bench", name, "--model=tiny",
                  f"--output={out}", *extra], check=True, timeout=600,
                  capture_output=True)
  report = json.loads(out.read_text())
  for impl in impls:
    assert report[impl]["tokens_per_s"] > 0
    assert len(report[impl]["times_s"]) == report.get("repeats",
                                                      report.get("steps"))
    assert report[impl]["spread"] >= 0
  key = "speedup_vs_hf" if name == "decode" else "speedup_vs_torch"
  assert report[key] > 0 and report["mfu"] > 0
  assert report["machine"]["load_average_1m_at_start"] is not None
  assert isinstance(report["profile_notes"], list)
  if name == "decode":
    assert report["ids_equal_hf"]
    assert all(report[impl]["ids_equal_hf"] for impl in impls if impl != "hf")
    assert report["cpu_kernels"] is True  # This machine has a compiler.
    floor = report["memory_floor"]
    assert floor["pad_read_gbs"] > 0 and floor["floor_seconds_per_call"] > 0
    mb = floor["bytes_per_step_mb"]
    assert mb["total"] == pytest.approx(sum(
        v for k, v in mb.items() if k != "total"), abs=0.2)


@pytest.mark.slow
def test_bench_stepwise_tiny(tmp_path):
  """`python -m pad_jax.bench stepwise` end to end with a barely trained
  tiny student (its structure; the full run trains 200 steps)."""
  out = tmp_path / "stepwise.json"
  result = subprocess.run(
      [sys.executable, "-m", "pad_jax.bench", "stepwise", f"--output={out}",
       f"--work_dir={tmp_path}", "--train_steps=20", "--questions=2",
       "--batch_size=2", "--beam_size=2", "--step_candidates=2",
       "--repeats=1", "--max_decode_length=64"],
      timeout=900, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(out.read_text())
  for side in ("greedy", "stepwise"):
    assert report[side]["seconds_per_question"] > 0
    assert len(report[side]["times_s"]) == report["repeats"] == 1
  assert report["ratio_stepwise_vs_greedy"] > 0
  assert report["ids_equal_greedy"] is True
  assert report["programs"] == 2
  assert set(report["stepwise_breakdown_s_per_question"]) == {
      "decode_lines", "execute", "rest"}
  assert report["machine"]["load_average_1m_at_start"] is not None
