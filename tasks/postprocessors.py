"""Output postprocessor and metric hook shared by every pad-jax task.

seqio calls `postprocess_fn(output, example=..., is_target=...)` on each
decoded target and prediction, then `metric_fn(targets, predictions)`:

* targets -> the gold number (float) from the example's `answer` feature;
* predictions -> the program to run (`pad_jax.execution.scoring.program_to_run`):
  the text itself when it parses and defines `solution()`, else the program
  extracted from it, else the raw text (which then fails as written);
* `execution_metric` runs every program once in the sandboxed executor
  (`pad_jax.metrics.execution_metrics`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from pad_jax import answers
from pad_jax import metrics
from pad_jax.execution import scoring


def _text(value: Any) -> str:
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars.
    return _text(value.item())
  return str(value)


def postprocess(output: Any,
                example: Optional[Mapping[str, Any]] = None,
                is_target: bool = False) -> Any:
  """Turns a decoded target into the gold number, a prediction into a program.

  Args:
    output: the decoded string (str or bytes).
    example: the raw example (seqio passes it, values may be bytes or numpy
      scalars); its `answer` feature is the gold number as text.
    is_target: True for targets, False for model predictions.

  Returns:
    For targets: the gold answer as a float (None if it does not parse). For
    predictions: the program to run: the text unchanged when it is a program
    defining `solution()`, else the program extracted from it, else the text.
  """
  if is_target:
    if example is not None and "answer" in example:
      return answers.parse_number(_text(example["answer"]))
    return answers.parse_number(_text(output))
  return scoring.program_to_run(_text(output))


def execution_metric(targets: Sequence[Optional[float]],
                     predictions: Sequence[str]) -> dict[str, Any]:
  """seqio metric: executes all predicted programs and scores their answers.

  Args:
    targets: gold numbers (from `postprocess(..., is_target=True)`).
    predictions: program texts.

  Returns:
    The dict of `pad_jax.metrics.execution_metrics`.
  """
  return metrics.execution_metrics(targets, predictions)
