"""The execution metric of every pad-jax seqio task.

`execution_metrics(targets, predictions)` is the seqio metric function (wired
in `tasks/postprocessors.py`): it scores all predictions of an evaluation in
one sandboxed executor pool through the one scoring path
(`pad_jax.execution.scoring`) and returns plain floats, each a fraction in
[0, 1]:

* `accuracy`: predictions whose answer matches the gold answer;
* `runnable_rate`: predictions that ran and returned a number (`ok`);
* `status/<name>`: the fraction of each status in `pad_jax.execution.STATUSES`.

A prediction may also be a list of programs (K samples for one question):
its answer is then the majority vote of the answers of its runnable programs
(self-consistency), and it counts as runnable if any program ran.
"""

from __future__ import annotations

from typing import Any, Sequence

from pad_jax.execution import STATUSES
from pad_jax.execution import scoring
from pad_jax.execution.limits import ExecLimits


def execution_metrics(targets: Sequence[Any], predictions: Sequence[scoring.Prediction],
                      limits: ExecLimits = ExecLimits()) -> dict[str, float]:
  """Executes `predictions` and scores them against `targets`.

  Args:
    targets: gold answers (numbers or numeric strings), one per example.
    predictions: program texts (None for "no program"), or lists of program
      texts to majority-vote, one per example.
    limits: the executor's limits and the answer comparison.

  Returns:
    `{"accuracy", "runnable_rate", "status/<name>" ...}` as fractions.
  """
  summary = scoring.summarize(scoring.score(targets, predictions, limits))
  n = max(1, summary["n"])
  return {"accuracy": float(summary["accuracy"]), "runnable_rate": float(summary["runnable_rate"]),
          **{f"status/{s}": summary["status_counts"][s] / n for s in STATUSES}}
