"""kill -9 and restart: the resumed run ends with identical parameters.

Runs the real `python -m t5x.train` (models/tiny.gin + runs/pad_finetune.gin,
dropout on, seeded shuffle) twice into different run directories: once
uninterrupted, once killed with SIGKILL right after its first checkpoint
after step 0 is committed and then started again with the same command. Both
must end with bit-identical parameters and optimizer state.
"""

import os
import signal
import subprocess
import time

import numpy as np
import pytest

import train_testlib as tl

STEPS = 12
PERIOD = 4
# Decoding is not needed for parameter identity; it only costs time.
NO_INFER_EVAL = ("--gin.train.infer_eval_dataset_cfg=None",
                 "--gin.train.train_eval_dataset_cfg=None")


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory):
  return tl.write_program_dataset(
      tmp_path_factory.mktemp("resume") / "programs.jsonl")


def _wait_for_checkpoint(proc, model_dir, step, timeout=240):
  marker = model_dir / f"checkpoint_{step}" / "commit_success.txt"
  deadline = time.time() + timeout
  while time.time() < deadline:
    if marker.exists():
      return True
    if proc.poll() is not None:
      return False
    time.sleep(0.05)
  return False


def test_kill9_and_restart_gives_identical_parameters(tmp_path, jsonl):
  env = tl.subprocess_env(jsonl)
  straight = tmp_path / "straight"
  killed = tmp_path / "killed"

  result = tl.run(
      tl.train_argv(straight, STEPS, PERIOD, NO_INFER_EVAL), env)
  assert result.returncode == 0, result.stderr[-4000:]

  argv = tl.train_argv(killed, STEPS, PERIOD, NO_INFER_EVAL)
  log = tmp_path / "killed.log"
  with open(log, "w") as stderr:  # A pipe would fill up and block t5x.
    proc = subprocess.Popen(argv, cwd=tl.REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=stderr)
    try:
      reached = _wait_for_checkpoint(proc, killed, PERIOD)
      assert reached, f"no checkpoint_{PERIOD}: {log.read_text()[-4000:]}"
      os.kill(proc.pid, signal.SIGKILL)
      proc.wait(timeout=60)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  assert proc.returncode == -signal.SIGKILL
  steps_at_kill = tl.checkpoint_steps(killed)
  assert PERIOD in steps_at_kill and STEPS not in steps_at_kill

  result = tl.run(argv, env)  # The same command again.
  assert result.returncode == 0, result.stderr[-4000:]
  restored_from = max(steps_at_kill)
  assert f"Starting main loop over steps {restored_from}-{STEPS}" in \
      result.stderr, result.stderr[-4000:]

  a = tl.load_params(straight / f"checkpoint_{STEPS}")
  b = tl.load_params(killed / f"checkpoint_{STEPS}")
  assert a.keys() == b.keys()
  assert any("target" in k for k in a)
  different = [k for k in a if not np.array_equal(a[k], b[k])]
  assert not different, different
  # Guard against a vacuous pass: training moved the parameters.
  first = tl.load_params(straight / "checkpoint_0")
  moved = [k for k in a if "target" in k and not np.array_equal(a[k], first[k])]
  assert moved
