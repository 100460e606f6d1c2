"""Train and evaluate a tiny student with the PaD run configs, end to end.

One module-scoped run of the real `python -m t5x.train` (models/tiny.gin +
runs/pad_finetune.gin) on a small synthetic program task, with validation by
decoding and executing programs every 4 steps, is shared by the tests; then
`python -m t5x.eval` with runs/pad_eval.gin scores its checkpoint on a real
benchmark task. The hooks of `pad_jax.train_hooks` are also tested directly.
"""

import json

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
  # Linear warmup (2 steps) then linear decay: the logged rate is the
  # schedule the optimizer applies.
  schedule = train_hooks.learning_rate_schedule(1e-3, 2, STEPS)
  assert train["learning_rate"][-1] == pytest.approx(
      float(schedule(STEPS)), abs=1e-7)
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


def test_checkpoint_of_another_model_fails_clearly(trained, jsonl, tmp_path):
  result = tl.run(
      tl.eval_argv(trained / f"checkpoint_{STEPS}", tmp_path / "eval",
                   extra=("--gin.network.T5Config.mlp_dim=256",)),
      tl.subprocess_env(jsonl))
  assert result.returncode != 0
  assert "has shape" in result.stderr and "in the model" in result.stderr
  assert "mlp" in result.stderr


def test_feature_lengths_too_short_fail_with_counts(jsonl, tmp_path):
  result = tl.run(
      tl.train_argv(tmp_path / "run", 2, 2, (
          "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 48}",)),
      tl.subprocess_env(jsonl))
  assert result.returncode != 0
  assert "TASK_FEATURE_LENGTHS too short for the data" in result.stderr
  assert "examples longer than 48 tokens" in result.stderr
  report = json.loads(
      (tmp_path / "run" / f"truncation-{tl.TASK}-train.json").read_text())
  assert report["truncated"]["targets"] > 0


# --- in-process tests of the hooks ------------------------------------------


def test_unknown_task_error_names_registered_tasks():
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
