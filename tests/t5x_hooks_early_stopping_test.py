"""pad_jax.t5x_hooks.early_stopping: best-so-far patience, kept across restarts."""

import json

import numpy as np
import seqio
import tensorflow as tf

from pad_jax.t5x_hooks import early_stopping


class _State:

  def __init__(self, step):
    self.step = np.int32(step)


def _run(action, step, value):
  return action.run(_State(step), {"t": {"accuracy": value}})


def test_early_stopping_counts_from_best_and_survives_restart(tmp_path):
  action = early_stopping.EarlyStopping("t", patience=3,
                                        model_dir=str(tmp_path))
  assert not _run(action, 10, 0.2)
  assert not _run(action, 20, 0.5)
  assert not _run(action, 30, 0.4)   # 1 without improvement
  assert not _run(action, 40, 0.5)   # equal is not better: 2
  # A restarted run reads the history back and keeps counting.
  again = early_stopping.EarlyStopping("t", patience=3,
                                       model_dir=str(tmp_path))
  assert again.state()["best_step"] == 20
  assert _run(again, 50, seqio.metrics.Scalar(0.45))  # 3 -> stop
  state = early_stopping.read_early_stopping(str(tmp_path))
  assert state["stop"] and state["best_value"] == 0.5
  # Re-evaluating a step after a restart replaces it instead of counting.
  third = early_stopping.EarlyStopping("t", patience=3,
                                       model_dir=str(tmp_path))
  assert not _run(third, 40, 0.9)
  assert third.state()["history"] == [(10, 0.2), (20, 0.5), (30, 0.4),
                                      (40, 0.9)]
  # A missing metric is logged and not counted.
  assert not third.run(_State(60), {"other": {"accuracy": 1.0}})
  # Written whole (temp file + rename): no leftovers next to it.
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      early_stopping.EARLY_STOPPING_FILE]
  assert early_stopping.read_early_stopping(str(tmp_path / "none")) is None


def test_state_file_on_a_gfile_path():
  """A MODEL_DIR with a scheme (gs:// in production; ram:// here) works."""
  model_dir = "ram://early_stopping_test/run"
  action = early_stopping.EarlyStopping("t", patience=1, model_dir=model_dir)
  assert not _run(action, 1, 0.5)
  assert _run(action, 2, 0.1)
  with tf.io.gfile.GFile(f"{model_dir}/early_stopping.json") as f:
    assert json.load(f)["best_step"] == 1
  assert tf.io.gfile.listdir(model_dir) == ["early_stopping.json"]
  again = early_stopping.EarlyStopping("t", patience=1, model_dir=model_dir)
  assert again.state()["stop"]


def test_tensorboard_metric_name():
  assert early_stopping.tensorboard_metric_name("pad_x", "accuracy") == (
      "inference_eval/pad_x/eval/accuracy")
