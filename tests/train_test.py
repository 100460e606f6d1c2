"""Train and evaluate a tiny student with the PaD run configs, end to end.

One module-scoped run of the real `python -m t5x.train` (models/tiny.gin +
runs/pad_finetune.gin) on a small synthetic program task, with validation by
decoding and executing programs every 4 steps, is shared by the tests: it is
checked for checkpoints, TensorBoard scalars and early-stopping state, it is
the uninterrupted reference of the kill -9 / restart test, and
`python -m t5x.eval` with runs/pad_eval.gin scores its checkpoint on a real
benchmark task. The hooks themselves are tested in-process in
tests/t5x_hooks_*_test.py; the shape check is tested here against the
trained checkpoint.
"""

import json
import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from pad_jax.t5x_hooks import checkpoint_init
from pad_jax.t5x_hooks import early_stopping
from pad_jax.t5x_hooks import schedules
import train_testlib as tl

STEPS = 8
PERIOD = 4


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory):
  return tl.write_program_dataset(
      tmp_path_factory.mktemp("train") / "programs.jsonl")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, jsonl):
  model_dir = tmp_path_factory.mktemp("train") / "run"
  result = tl.run(tl.train_argv(model_dir, STEPS, PERIOD),
                  tl.subprocess_env(jsonl))
  assert result.returncode == 0, result.stderr[-4000:]
  return model_dir


def test_train_writes_checkpoints_and_tensorboard(trained):
  assert STEPS in tl.checkpoint_steps(trained)
  train = tl.tensorboard_tags(trained / "train")
  for tag in ("loss", "accuracy", "learning_rate",
              "timing/steps_per_second"):
    assert tag in train, sorted(train)
  assert np.isfinite(train["loss"]).all()
  # Linear warmup (2 steps) then linear decay: the logged rate (t5x logs the
  # mean over the steps of a summary period) is the optimizer's schedule.
  schedule = schedules.learning_rate_schedule(1e-3, 2, STEPS)
  expected = np.mean([float(schedule(s)) for s in range(PERIOD, STEPS)])
  assert train["learning_rate"][-1] == pytest.approx(expected, rel=1e-5)
  teacher_forced = tl.tensorboard_tags(trained / "training_eval" / tl.TASK)
  assert "loss" in teacher_forced


def test_validation_executes_programs_and_drives_early_stopping(trained):
  tags = tl.tensorboard_tags(trained / "inference_eval" / tl.TASK)
  for tag in ("eval/accuracy", "eval/runnable_rate"):
    assert len(tags[tag]) == 2, sorted(tags)
  assert any(t.startswith("eval/status/") for t in tags), sorted(tags)
  lines = (trained / "inference_eval" /
           f"{tl.TASK}-metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["step"] for l in lines] == [PERIOD, STEPS]
  state = early_stopping.read_early_stopping(str(trained))
  assert [s for s, _ in state["history"]] == [PERIOD, STEPS]
  assert state["history"][-1][1] == pytest.approx(tags["eval/accuracy"][-1])
  assert state["best_step"] in (PERIOD, STEPS)
  assert not state["stop"]
  # The best checkpoint is kept (t5x's Orbax manager, keep=1 by metric).
  assert state["best_step"] in tl.checkpoint_steps(trained)
  report = json.loads(
      (trained / f"truncation-{tl.TASK}-train.json").read_text())
  assert report["examples"] > 0 and report["truncated"]["targets"] == 0


def test_eval_on_benchmark_task_executes_predictions(trained, jsonl, tmp_path):
  out = tmp_path / "eval"
  result = tl.run(
      tl.eval_argv(trained / f"checkpoint_{STEPS}", out, num_examples=8),
      tl.subprocess_env(jsonl))
  assert result.returncode == 0, result.stderr[-4000:]
  metrics = [json.loads(l) for l in (
      out / "inference_eval" / f"{tl.EVAL_TASK}-metrics.jsonl"
  ).read_text().splitlines()]
  assert metrics[-1]["step"] == STEPS
  assert 0.0 <= metrics[-1]["accuracy"] <= 1.0
  assert 0.0 <= metrics[-1]["runnable_rate"] <= 1.0
  statuses = {k: v for k, v in metrics[-1].items() if k.startswith("status/")}
  assert statuses and sum(statuses.values()) == pytest.approx(1.0)
  predictions = (out / "inference_eval" /
                 f"{tl.EVAL_TASK}-{STEPS:06d}.jsonl").read_text().splitlines()
  assert len(predictions) == 8
  tags = tl.tensorboard_tags(out / "inference_eval" / tl.EVAL_TASK)
  assert "eval/accuracy" in tags


def _wait_for_checkpoint(proc, model_dir, step, timeout=300):
  marker = model_dir / f"checkpoint_{step}" / "commit_success.txt"
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if marker.exists():
      return True
    time.sleep(0.05)
  return marker.exists()


def test_kill9_and_restart_ends_with_identical_parameters(
    trained, jsonl, tmp_path):
  """SIGKILL after the step-4 checkpoint, same command again: same params.

  The uninterrupted run is the `trained` fixture (identical command line);
  dropout is on and the data order is a seeded shuffle.
  """
  killed = tmp_path / "run"
  argv = tl.train_argv(killed, STEPS, PERIOD)
  env = tl.subprocess_env(jsonl)
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
  assert f"Starting main loop over steps {max(steps_at_kill)}-{STEPS}" in \
      result.stderr, result.stderr[-4000:]

  a = tl.load_params(trained / f"checkpoint_{STEPS}")
  b = tl.load_params(killed / f"checkpoint_{STEPS}")
  assert a.keys() == b.keys()
  different = [k for k in a if not np.array_equal(a[k], b[k])]
  assert not different, different
  # Not vacuous: training moved the parameters away from the step-0 ones.
  first = tl.load_params(trained / "checkpoint_0")
  assert any(not np.array_equal(a[k], first[k]) for k in a if "target" in k)
  # Validation ran after the restart too (the step-4 one may have been cut
  # short by the kill; t5x does not repeat it).
  state = early_stopping.read_early_stopping(str(killed))
  assert state["history"][-1][0] == STEPS


def test_checkpoint_of_another_model_fails_clearly(trained):
  ckpt = trained / f"checkpoint_{STEPS}"
  stored = checkpoint_init.checkpoint_param_shapes(str(ckpt))
  assert "decoder/layers_0/mlp/wi_0/kernel" in stored
  model = {k: jax.ShapeDtypeStruct(v, np.float32) for k, v in stored.items()}
  # The same parameter tree: no error.
  checkpoint_init.check_checkpoint_matches_model(str(ckpt), _Shapes(model))
  name = "decoder/layers_0/mlp/wi_0/kernel"
  stored_shape = stored[name]
  wrong = (stored_shape[0], 2 * stored_shape[1])
  model[name] = jax.ShapeDtypeStruct(wrong, np.float32)
  with pytest.raises(ValueError, match=(
      rf"parameter '{name}' has shape \({stored_shape[0]}, "
      rf"{stored_shape[1]}\) in the checkpoint but \({wrong[0]}, "
      rf"{wrong[1]}\) in the model")):
    checkpoint_init.check_checkpoint_matches_model(str(ckpt), _Shapes(model))
  del model["decoder/layers_0/mlp/wi_0/kernel"]
  with pytest.raises(ValueError, match="does not exist in the model"):
    checkpoint_init.check_checkpoint_matches_model(str(ckpt), _Shapes(model))
  with pytest.raises(ValueError, match="does not exist"):
    checkpoint_init.checkpoint_to_restore(None, str(trained / "checkpoint_999"))
  # A run directory resolves to its newest checkpoint.
  assert checkpoint_init.checkpoint_to_restore(None, str(trained)).endswith(
      f"checkpoint_{STEPS}")


class _Shapes:
  """Stands in for `TrainStateInitializer.global_train_state_shape`."""

  def __init__(self, flat):
    self.params = {}
    for name, shape in flat.items():
      node = self.params
      *parents, leaf = name.split("/")
      for p in parents:
        node = node.setdefault(p, {})
      node[leaf] = shape
