"""Train and evaluate a tiny student with the PaD run configs, end to end.

One module-scoped run of the real `python -m t5x.train` (models/tiny.gin +
runs/pad_finetune.gin) on a small synthetic program task, with validation by
decoding and executing programs every 4 steps, is shared by the tests: it is
checked for checkpoints, TensorBoard scalars and early-stopping state, it is
the uninterrupted reference of the kill -9 / restart test, and
`python -m t5x.eval` with runs/pad_eval.gin scores its checkpoint on a real
benchmark task. The hooks of `pad_jax.train_hooks` are also tested directly.
"""

import json
import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest
import seqio

from pad_jax import train_hooks
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
  schedule = train_hooks.learning_rate_schedule(1e-3, 2, STEPS)
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
  state = train_hooks.read_early_stopping(str(trained))
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
  state = train_hooks.read_early_stopping(str(killed))
  assert state["history"][-1][0] == STEPS


def test_checkpoint_of_another_model_fails_clearly(trained):
  ckpt = trained / f"checkpoint_{STEPS}"
  stored = train_hooks._checkpoint_param_shapes(str(ckpt))
  assert "decoder/layers_0/mlp/wi_0/kernel" in stored
  model = {k: jax.ShapeDtypeStruct(v, np.float32) for k, v in stored.items()}
  # The same parameter tree: no error.
  train_hooks.check_checkpoint_matches_model(str(ckpt), _Shapes(model))
  name = "decoder/layers_0/mlp/wi_0/kernel"
  stored_shape = stored[name]
  wrong = (stored_shape[0], 2 * stored_shape[1])
  model[name] = jax.ShapeDtypeStruct(wrong, np.float32)
  with pytest.raises(ValueError, match=(
      rf"parameter '{name}' has shape \({stored_shape[0]}, "
      rf"{stored_shape[1]}\) in the checkpoint but \({wrong[0]}, "
      rf"{wrong[1]}\) in the model")):
    train_hooks.check_checkpoint_matches_model(str(ckpt), _Shapes(model))
  del model["decoder/layers_0/mlp/wi_0/kernel"]
  with pytest.raises(ValueError, match="does not exist in the model"):
    train_hooks.check_checkpoint_matches_model(str(ckpt), _Shapes(model))
  with pytest.raises(ValueError, match="does not exist"):
    train_hooks._checkpoint_to_restore(None, str(trained / "checkpoint_999"))
  # A run directory resolves to its newest checkpoint.
  assert train_hooks._checkpoint_to_restore(None, str(trained)).endswith(
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


def test_feature_lengths_too_short_fail_with_counts(jsonl, tmp_path):
  import tasks  # pylint: disable=g-import-not-at-top,unused-import
  from pad_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  from tasks import program_tasks  # pylint: disable=g-import-not-at-top
  from t5x import utils  # pylint: disable=g-import-not-at-top
  program_tasks.register_program_task(
      tl.TASK, str(jsonl), vocabulary=synthetic.demo_vocabulary(),
      validation_fraction=0.1)
  cfg = utils.DatasetConfig(
      mixture_or_task_name=tl.TASK, split="train", batch_size=8,
      shuffle=False, seed=0, use_cached=False, pack=False,
      task_feature_lengths={"inputs": 64, "targets": 48})
  with pytest.raises(ValueError, match="TASK_FEATURE_LENGTHS too short for "
                     "the data.*targets: [0-9]+/81 examples longer than 48 "
                     "tokens"):
    train_hooks.check_truncation(cfg, {"targets": 0.01}, str(tmp_path))
  report = json.loads(
      (tmp_path / f"truncation-{tl.TASK}-train.json").read_text())
  assert report["examples"] == 81 and report["truncated"]["targets"] > 0
  # Allowing that fraction turns the error into a logged count.
  allowed = {"targets": report["truncated"]["targets"] / 81}
  assert train_hooks.check_truncation(cfg, allowed).truncated == \
      report["truncated"]
  # The in-memory train stream trims like seqio and batches like t5x.
  from t5x import models  # pylint: disable=g-import-not-at-top
  cfg.task_feature_lengths = {"inputs": 64, "targets": 128}
  cfg.shuffle = True
  ds = train_hooks.get_train_dataset(
      cfg, 0, 1, models.EncoderDecoderModel.FEATURE_CONVERTER_CLS)
  batch = next(ds.as_numpy_iterator())
  assert batch["encoder_input_tokens"].shape == (8, 64)
  assert batch["decoder_target_tokens"].shape == (8, 128)
  again = next(train_hooks.get_train_dataset(
      cfg, 0, 1, models.EncoderDecoderModel.FEATURE_CONVERTER_CLS
  ).as_numpy_iterator())
  assert np.array_equal(batch["decoder_target_tokens"],
                        again["decoder_target_tokens"])  # seeded order


# --- in-process tests of the hooks ------------------------------------------


def test_unknown_task_error_names_registered_tasks():
  import tasks  # pylint: disable=g-import-not-at-top,unused-import
  with pytest.raises(ValueError, match="no seqio task or mixture named "
                     "'pad_no_such_task'.*pad_eval_gsm8k"):
    train_hooks.checked_task_name("pad_no_such_task")


class _State:

  def __init__(self, step):
    self.step = np.int32(step)


def test_early_stopping_counts_from_best_and_survives_restart(tmp_path):
  def run(action, step, value):
    return action.run(_State(step), {"t": {"accuracy": value}})

  action = train_hooks.EarlyStopping("t", patience=3, model_dir=str(tmp_path))
  assert not run(action, 10, 0.2)
  assert not run(action, 20, 0.5)
  assert not run(action, 30, 0.4)   # 1 without improvement
  assert not run(action, 40, 0.5)   # equal is not better: 2
  # A restarted run reads the history back and keeps counting.
  again = train_hooks.EarlyStopping("t", patience=3, model_dir=str(tmp_path))
  assert again.state()["best_step"] == 20
  assert run(again, 50, seqio.metrics.Scalar(0.45))  # 3 -> stop
  state = train_hooks.read_early_stopping(str(tmp_path))
  assert state["stop"] and state["best_value"] == 0.5
  # Re-evaluating a step after a restart replaces it instead of counting.
  third = train_hooks.EarlyStopping("t", patience=3, model_dir=str(tmp_path))
  assert not run(third, 40, 0.9)
  assert third.state()["history"] == [(10, 0.2), (20, 0.5), (30, 0.4),
                                      (40, 0.9)]
  # A missing metric is logged and not counted.
  assert not third.run(_State(60), {"other": {"accuracy": 1.0}})


def test_learning_rate_schedule_warmup_and_decay():
  lr = train_hooks.learning_rate_schedule(6e-5, 100, 1100)
  assert float(lr(0)) == 0.0
  assert float(lr(50)) == pytest.approx(3e-5)
  assert float(lr(100)) == pytest.approx(6e-5)
  assert float(lr(600)) == pytest.approx(3e-5)
  assert float(lr(1100)) == pytest.approx(0.0, abs=1e-12)
  const = train_hooks.learning_rate_schedule(1e-3, 0, 10, decay="constant")
  assert float(const(7)) == pytest.approx(1e-3)


def test_trim_keeps_eos_last():
  tokens = np.array([5, 6, 7, 8, 1], np.int32)
  assert train_hooks._trim(tokens, 3, 1).tolist() == [5, 6, 1]
  assert train_hooks._trim(tokens, 9, 1).tolist() == tokens.tolist()
  assert train_hooks._trim(tokens, 3, None).tolist() == [5, 6, 7]
