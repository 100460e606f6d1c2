"""The execution metric: run predicted programs, compare with gold answers.

`execution_metrics(targets, predictions)` is a seqio metric function
(`metric_fns=[pad_jax.metrics.execution_metrics]` in `tasks/`): it executes
all predictions of an evaluation in one sandboxed executor pool call (see
`pad_jax.execution`) and returns plain floats, every one a fraction in
[0, 1]:

* `accuracy`: predictions whose answer matches the gold answer;
* `runnable_rate`: predictions that ran and returned a number (`ok`);
* `status/<name>`: the fraction of each status in `pad_jax.execution.STATUSES`.

A prediction may also be a list of programs (K samples for one question):
its answer is then the majority vote of the answers of its runnable programs
(self-consistency), and it counts as runnable if any program ran.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Iterable, Optional, Sequence, Union

from pad_jax import answers
from pad_jax.execution import STATUSES, ExecResult, Executor

Prediction = Union[Optional[str], Sequence[Optional[str]]]


def majority_vote(values: Iterable[Any]) -> Optional[float]:
  """The most common number in `values` (None and non-numbers are ignored).

  Numbers that agree to 9 significant digits count as the same answer (so
  0.1 + 0.2 and 0.3 vote together); ties go to the value seen first.

  Args:
    values: answers, e.g. the `value`s of K executed samples.

  Returns:
    The winning answer as a float, or None if no value is a number.
  """
  counts: collections.Counter = collections.Counter()
  first: dict[str, float] = {}
  for value in values:
    number = answers.parse_number(value)
    if number is None:
      continue
    key = _vote_key(number)
    counts[key] += 1
    first.setdefault(key, number)
  if not counts:
    return None
  best = max(counts.values())
  for key, number in first.items():  # insertion order = first seen
    if counts[key] == best:
      return number
  return None  # unreachable


def _vote_key(number: float) -> str:
  if number == 0 or not math.isfinite(number):
    return repr(number + 0.0)
  return f"{number:.9g}"


def execution_metrics(targets: Sequence[Any],
                      predictions: Sequence[Prediction],
                      *,
                      mode: str = "pad",
                      timeout_s: float = 5.0,
                      memory_mb: int = 1024,
                      workers: Optional[int] = None,
                      exec_mode: str = "return") -> dict[str, float]:
  """Executes `predictions` and scores them against `targets`.

  Args:
    targets: gold answers (numbers or numeric strings), one per example.
    predictions: program texts (None for "no program"), or lists of program
      texts to majority-vote, one per example.
    mode: answer comparison, "pad" (rounded equality, the paper's) or
      "strict" (|pred - gold| < 1e-3, PAL's); see `pad_jax.answers`.
    timeout_s, memory_mb, workers, exec_mode: passed to the `Executor`.

  Returns:
    `{"accuracy", "runnable_rate", "status/<name>" ...}` as fractions.
  """
  if len(targets) != len(predictions):
    raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
  scored = score_predictions(targets, predictions, mode=mode,
                             timeout_s=timeout_s, memory_mb=memory_mb,
                             workers=workers, exec_mode=exec_mode)
  return summarize(scored)


def score_predictions(targets: Sequence[Any],
                      predictions: Sequence[Prediction],
                      *,
                      mode: str = "pad",
                      timeout_s: float = 5.0,
                      memory_mb: int = 1024,
                      workers: Optional[int] = None,
                      exec_mode: str = "return") -> list[dict[str, Any]]:
  """Per-example results: `status`, `value`, `correct`, `error`, `seconds`."""
  groups = [list(p) if isinstance(p, (list, tuple)) else [p] for p in predictions]
  flat = [program for group in groups for program in group]
  if flat:
    with Executor(workers=workers, timeout_s=timeout_s, memory_mb=memory_mb,
                  mode=exec_mode) as executor:
      results = executor.run(flat)
  else:
    results = []
  scored, at = [], 0
  for target, group in zip(targets, groups):
    scored.append(combine(results[at:at + len(group)], target, mode))
    at += len(group)
  return scored


def combine(results: Sequence[ExecResult], target: Any, mode: str = "pad") -> dict[str, Any]:
  """Folds the ExecResults of one example's programs into one scored row."""
  if len(results) == 1:
    result = results[0]
    value = result.value if result.ok else None
    status, error = result.status, result.error
  else:
    value = majority_vote(r.value for r in results if r.ok)
    ok = [r for r in results if r.ok]
    first = ok[0] if ok else (results[0] if results else None)
    status = first.status if first else "no_solution"
    error = first.error if first else "no program"
  return {
      "status": status,
      "value": value,
      "correct": value is not None and answers.answers_match(value, target, mode),
      "error": error,
      "seconds": round(sum(r.seconds for r in results), 6),
  }


def summarize(scored: Sequence[dict[str, Any]]) -> dict[str, float]:
  """accuracy, runnable_rate and status/<name> fractions of scored rows."""
  n = len(scored)
  if not n:
    return {"accuracy": 0.0, "runnable_rate": 0.0,
            **{f"status/{s}": 0.0 for s in STATUSES}}
  counts = collections.Counter(row["status"] for row in scored)
  metrics = {
      "accuracy": sum(bool(row["correct"]) for row in scored) / n,
      "runnable_rate": counts["ok"] / n,
  }
  metrics.update({f"status/{s}": counts[s] / n for s in STATUSES})
  return metrics
