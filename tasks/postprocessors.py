"""Output postprocessor and metric hook shared by every pad-jax task.

seqio calls `postprocess_fn(output, example=..., is_target=...)` on each
decoded target and prediction, then `metric_fn(targets, predictions)`:

* targets -> the gold number (float) from the example's `answer` feature;
* predictions -> program text, pulled out of the raw completion by
  `pad_jax.teacher.extraction.extract_program` (the raw text when nothing
  program-like is found, so the metric counts it as a failed program);
* `execution_metric` runs every program once in the sandboxed executor
  (`pad_jax.metrics.execution_metrics`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from pad_jax import answers


def _text(value: Any) -> str:
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars.
    return _text(value.item())
  return str(value)


def extract_program(output: Any,
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
    predictions: the program text (the extracted `def solution()` program,
    or the whole completion when none is found).
  """
  if is_target:
    if example is not None and "answer" in example:
      return answers.parse_number(_text(example["answer"]))
    return answers.parse_number(_text(output))
  # Lazy: importing the teacher package is only needed when decoding.
  from pad_jax.teacher import extraction  # pylint: disable=g-import-not-at-top
  text = _text(output)
  program = extraction.extract_program(text)
  return text if program is None else program


def execution_metric(targets: Sequence[Optional[float]],
                     predictions: Sequence[str]) -> dict[str, Any]:
  """seqio metric: executes all predicted programs and scores their answers.

  Args:
    targets: gold numbers (from `extract_program(..., is_target=True)`).
    predictions: program texts.

  Returns:
    The dict of `pad_jax.metrics.execution_metrics`.
  """
  # Lazy: the executor (processes, resource limits) is needed only at eval.
  from pad_jax import metrics  # pylint: disable=g-import-not-at-top
  return metrics.execution_metrics(targets, predictions)
