"""Tests for pad_jax.metrics: the seqio execution metric."""

import pytest

from pad_jax import execution
from pad_jax import metrics
from pad_jax.execution.limits import ExecLimits


def test_execution_metrics_counts_statuses_and_accuracy():
  targets = [42, "7", 3.5, 10, 1, 2]
  predictions = [
      "def solution():\n    return 6 * 7",          # ok, correct
      "def solution():\n    return 8",              # ok, wrong
      "def solution():\n    return 7 / 2",          # ok, correct
      "def solution():\n    return 1 / 0",          # runtime_error
      None,                                         # no program
      ["def solution():\n    return 2",             # vote: 2 wins 2:1
       "def solution():\n    return 3",
       "def solution(:",
       "def solution():\n    return 2.0"],
  ]
  result = metrics.execution_metrics(targets, predictions, ExecLimits(timeout_s=2.0, workers=2))
  assert result["accuracy"] == pytest.approx(3 / 6)
  assert result["runnable_rate"] == pytest.approx(4 / 6)
  assert result["status/runtime_error"] == pytest.approx(1 / 6)
  assert result["status/no_solution"] == pytest.approx(1 / 6)
  assert sum(result[f"status/{s}"] for s in execution.STATUSES) == pytest.approx(1.0)
  assert all(isinstance(v, float) for v in result.values())


def test_strict_and_pad_modes_differ():
  targets = [2.5]
  predictions = ["def solution():\n    return 2.6"]
  assert metrics.execution_metrics(targets, predictions, ExecLimits(answer_mode="strict"))["accuracy"] == 0.0
  # The paper's lenient check rounds both sides: round(2.6) == round(2.5)? 3 != 2.
  assert metrics.execution_metrics([3], ["def solution():\n    return 2.6"],
                                   ExecLimits(answer_mode="pad"))["accuracy"] == 1.0


def test_execution_metrics_edge_cases():
  assert metrics.execution_metrics([], [])["accuracy"] == 0.0
  with pytest.raises(ValueError):
    metrics.execution_metrics([1, 2], ["def solution():\n    return 1"])
