"""Early stopping on the validation metric, persisted in the model directory.

`EarlyStopping` is a `t5x.trainer.BaseAction` run after every inference
evaluation: it tracks the best validation value, writes
`<model_dir>/early_stopping.json` (so a restarted run keeps counting) and
asks t5x to stop after `patience` evaluations without improvement. Keeping
the best checkpoint is left to t5x's Orbax checkpoint manager
(`metric_name_to_monitor`, see `tensorboard_metric_name`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

from absl import logging
import numpy as np
from t5x import trainer as trainer_lib
from t5x import utils
import tensorflow as tf

from pad_jax import atomic
from pad_jax.t5x_hooks import task_lookup

gfile = tf.io.gfile

EARLY_STOPPING_FILE = "early_stopping.json"


def tensorboard_metric_name(task: str, metric: str) -> str:
  """The `{run}/{tag}` name t5x's best-checkpoint keeping reads.

  `t5x.eval.InferenceEvaluator` logs to `<model_dir>/inference_eval` and
  `seqio.TensorBoardLogger` writes `<task>/eval/<metric>` below it.
  """
  return f"inference_eval/{task_lookup.task_name(task)}/eval/{metric}"


def _scalar(value: Any) -> Optional[float]:
  value = getattr(value, "value", value)
  try:
    return float(np.asarray(value))
  except (TypeError, ValueError):
    return None


def _read_state(path: str) -> Optional[dict[str, Any]]:
  """The JSON at `path` (local or gs://), or None if there is none."""
  if not gfile.exists(path):
    return None
  with gfile.GFile(path) as f:
    return json.load(f)


def read_early_stopping(model_dir: str) -> Optional[dict[str, Any]]:
  """The early-stopping state of a run directory, or None."""
  return _read_state(os.path.join(model_dir, EARLY_STOPPING_FILE))


class EarlyStopping(trainer_lib.BaseAction):
  """Stops training after `patience` evaluations without a new best value.

  Unlike `t5x.trainer.EarlyStoppingAction` (which compares consecutive
  values and forgets its history on restart) this compares with the best
  value so far and persists the history in `<model_dir>/early_stopping.json`,
  so a run killed and restarted keeps counting. The JSON also names the best
  step, whose checkpoint t5x's checkpoint manager keeps.
  """

  def __init__(
      self,
      task: str,
      metric: str = "accuracy",
      mode: str = "max",
      patience: int = 3,
      min_delta: float = 0.0,
      model_dir: Optional[str] = None,
  ):
    """Constructs the action.

    Args:
      task: the seqio task whose metric is monitored.
      metric: the metric name reported by the task's metric function.
      mode: "max" (higher is better) or "min".
      patience: evaluations without improvement before stopping; 0 disables.
      min_delta: an improvement must exceed this.
      model_dir: where the state file lives (None: in memory only).
    """
    if mode not in ("max", "min"):
      raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    self.task, self.metric, self.mode = task_lookup.task_name(task), metric, mode
    self.patience, self.min_delta = int(patience), float(min_delta)
    self.path = (
        os.path.join(model_dir, EARLY_STOPPING_FILE) if model_dir else None
    )
    state = _read_state(self.path) if self.path else None
    self.history: list[tuple[int, float]] = [
        (int(s), float(v)) for s, v in (state or {}).get("history", [])
    ]

  def _better(self, a: float, b: float) -> bool:
    if self.mode == "max":
      return a > b + self.min_delta
    return a < b - self.min_delta

  def state(self) -> dict[str, Any]:
    """Best step/value and evaluations since the best, from the history."""
    best_step, best, since = None, None, 0
    for step, value in self.history:
      if best is None or self._better(value, best):
        best_step, best, since = step, value, 0
      else:
        since += 1
    return {
        "task": self.task, "metric": self.metric, "mode": self.mode,
        "patience": self.patience, "best_step": best_step, "best_value": best,
        "evals_since_best": since, "history": self.history,
        "stop": bool(self.patience and since >= self.patience),
    }

  def run(
      self,
      train_state: Any,
      metrics_by_task: Mapping[str, Mapping[str, Any]],
  ) -> bool:
    value = _scalar(metrics_by_task.get(self.task, {}).get(self.metric))
    if value is None:
      logging.warning(
          "EarlyStopping: no metric %r for task %r (got %s); not counted.",
          self.metric, self.task,
          {t: sorted(m) for t, m in metrics_by_task.items()},
      )
      return False
    step = int(np.asarray(utils.get_local_data(train_state.step)))
    # After a restart the same step may be evaluated again: replace it.
    self.history = [(s, v) for s, v in self.history if s < step]
    self.history.append((step, value))
    state = self.state()
    if self.path:
      atomic.write_json(self.path, state)
    logging.info(
        "EarlyStopping: step %d %s/%s=%.4f best %.4f at step %s, %d eval(s) "
        "without improvement (patience %d)", step, self.task, self.metric,
        value, state["best_value"], state["best_step"],
        state["evals_since_best"], self.patience,
    )
    if state["stop"]:
      logging.warning(
          "EarlyStopping: stopping, %s/%s has not improved for %d "
          "evaluations; best %.4f at step %d.", self.task, self.metric,
          state["evals_since_best"], state["best_value"], state["best_step"],
      )
    return state["stop"]
