"""Smoke test of `python -m pad_jax.bench train|decode --model=tiny` (slow extra).

Timings are never asserted (the CPU is shared); the reports' structure and
the greedy-id agreement with Hugging Face are.
"""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("name,extra", [
    ("decode", ["--repeats=1", "--decode_length=16", "--inputs_length=16"]),
    ("train", ["--steps=1", "--warmup=0", "--inputs_length=16",
               "--targets_length=16"]),
])
def test_bench_tiny(tmp_path, name, extra):
  out = tmp_path / f"{name}.json"
  subprocess.run([sys.executable, "-m", "pad_jax.bench", name, "--model=tiny",
                  f"--output={out}", *extra], check=True, timeout=600,
                  capture_output=True)
  report = json.loads(out.read_text())
  baseline = {"decode": "hf", "train": "torch"}[name]
  for impl in ("pad", "t5x", baseline):
    assert report[impl]["tokens_per_s"] > 0
  key = "speedup_vs_hf" if name == "decode" else "speedup_vs_torch"
  assert report[key] > 0 and report["mfu"] > 0
  if name == "decode":
    assert report["pad"]["greedy_ids_equal_hf"]
    assert report["t5x"]["greedy_ids_equal_hf"]
