"""The one scoring path: execute predictions, compare, majority-vote, summarize.

Used by the seqio metric (`pad_jax.metrics`), `python -m pad_jax.score` and
the pipeline's score stage, so all three score a prediction the same way:

* **Run what the model wrote.** A prediction that parses and defines
  `solution()` is executed unchanged, so its status is what `python` would
  do with it (a failing module-level import fails). Teacher-style extraction
  (`pad_jax.execution.extraction`) applies only to text that is not such a
  program, e.g. chatty output around a code block (`program_to_run`).
* **K predictions per question** (self-consistency): every one is executed;
  the answer is the majority vote of the values of those that ran
  (`majority_vote`); the row's status is that of the first runnable one.
* **Resumable files**: `score_to_file` appends each scored row durably to
  `OUT.partial` (renamed to `OUT` when all rows are scored) and a rerun after
  a kill skips the rows already there (the resume rule of `pad_jax.jsonl`: a
  torn last line is redone, a malformed line before it is an error naming
  file:line and the file is left as it is).
"""

from __future__ import annotations

import ast
import collections
import math
import os
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

from pad_jax import answers
from pad_jax import jsonl
from pad_jax.errors import DataError
from pad_jax.execution import extraction
from pad_jax.execution.executor import STATUSES, ExecResult, Executor
from pad_jax.execution.limits import ExecLimits

Prediction = Union[Optional[str], Sequence[Optional[str]]]


def program_to_run(text: Optional[str], exec_mode: str = "return") -> Optional[str]:
  """The program to execute for a prediction: itself, when it is one.

  Args:
    text: the prediction (program text or a raw completion).
    exec_mode: the executor's mode; under "print" the text always runs as
      written (extraction keeps only `solution()` and would drop the prints).

  Returns:
    `text` unchanged when it parses and defines `solution()` at top level
    (or under "print"); else the program extracted from it, or `text` when
    nothing program-like is found (it then fails as written).
  """
  if not text or not text.strip() or exec_mode != "return" or defines_solution(text):
    return text
  program = extraction.extract_program(text)
  return text if program is None else program


def defines_solution(text: str) -> bool:
  """Whether `text` is a Python module with a top-level `def solution`."""
  try:
    tree = ast.parse(text)
  except (SyntaxError, ValueError):  # ValueError: NUL bytes
    return False
  return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "solution"
             for node in tree.body)


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
  return next(number for key, number in first.items() if counts[key] == best)


def _vote_key(number: float) -> str:
  if number == 0 or not math.isfinite(number):
    return repr(number + 0.0)
  return f"{number:.9g}"


def combine(results: Sequence[ExecResult], target: Any, mode: str = "pad") -> dict[str, Any]:
  """Folds the ExecResults of one example's K >= 1 programs into one scored row.

  Returns:
    `status`, `value`, `correct`, `error`, `seconds`, plus `num_programs`
    and `runnable_programs`.
  """
  runnable = [r for r in results if r.ok]
  if len(results) == 1:
    value = results[0].value if results[0].ok else None
  else:
    value = majority_vote(r.value for r in runnable)
  first = runnable[0] if runnable else (results[0] if results else None)
  return {
      "status": first.status if first else "no_solution",
      "value": value,
      "correct": value is not None and answers.answers_match(value, target, mode),
      "error": first.error if first else "no program",
      "seconds": round(sum(r.seconds for r in results), 6),
      "num_programs": len(results),
      "runnable_programs": len(runnable),
  }


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """`n`, `accuracy`, `runnable_rate` and `status_counts` (every status) of scored rows."""
  n = len(rows)
  counts = collections.Counter(row["status"] for row in rows)
  return {
      "n": n,
      "accuracy": sum(bool(row["correct"]) for row in rows) / n if n else 0.0,
      "runnable_rate": counts["ok"] / n if n else 0.0,
      "status_counts": {s: counts[s] for s in list(STATUSES) + sorted(set(counts) - set(STATUSES))},
  }


def _groups(predictions: Iterable[Prediction]) -> list[list[Optional[str]]]:
  return [list(p) if isinstance(p, (list, tuple)) else [p] for p in predictions]


def _paired_groups(targets: Sequence[Any],
                   predictions: Sequence[Prediction]) -> list[list[Optional[str]]]:
  """The predictions as K-lists, one per target (ValueError when they do not pair up)."""
  groups = _groups(predictions)
  if len(groups) != len(targets):
    raise ValueError(f"{len(targets)} targets but {len(groups)} predictions")
  return groups


def score_results(executor: Executor, targets: Sequence[Any], predictions: Sequence[Prediction],
                  limits: ExecLimits,
                  on_program: Optional[Callable[[], None]] = None) -> Iterator[dict[str, Any]]:
  """Executes `predictions` on `executor`; yields one scored row per target, in order.

  Args:
    executor: a started Executor (see `ExecLimits.executor`).
    targets: gold answers, one per example.
    predictions: a prediction (program text, raw completion or None) or a
      list of K of them, one per example.
    limits: the answer and execution modes.
    on_program: called after each executed program (progress bars).
  """
  groups = _paired_groups(targets, predictions)
  flat = (program_to_run(p, limits.exec_mode) for group in groups for p in group)
  results = executor.imap(flat)
  for target, group in zip(targets, groups):
    group_results = []
    for _ in group:
      group_results.append(next(results))
      if on_program:
        on_program()
    yield combine(group_results, target, limits.answer_mode)


def score(targets: Sequence[Any], predictions: Sequence[Prediction],
          limits: ExecLimits = ExecLimits()) -> list[dict[str, Any]]:
  """Scores predictions in a fresh executor pool; one row per example."""
  groups = _paired_groups(targets, predictions)
  if not any(isinstance(p, str) and p.strip() for group in groups for p in group):
    nothing = ExecResult("no_solution", None, "no program", 0.0)  # no pool to start
    return [combine([nothing] * len(group), target, limits.answer_mode)
            for target, group in zip(targets, groups)]
  with limits.executor() as executor:
    return list(score_results(executor, targets, predictions, limits))


def score_to_file(rows: Sequence[Mapping[str, Any]], output_path: Union[str, os.PathLike],
                  limits: ExecLimits, *,
                  results: Optional[Callable[[Sequence[Mapping[str, Any]]],
                                             Iterator[dict[str, Any]]]] = None,
                  make_bar: Optional[Callable[[int], Any]] = None
                  ) -> tuple[list[dict[str, Any]], Optional[str]]:
  """Scores `rows` into `output_path`, resuming what an interrupted run wrote.

  Args:
    rows: `{"id", "programs" (a prediction or a list of K), "answer"}` plus
      any `keep` dict whose items are copied into the output row.
    output_path: JSONL of scored rows (`id`, the `combine` fields, kept
      fields), appended row by row (flushed and fsync'd) to
      `output_path.partial`, which is renamed to `output_path` at the end.
    limits: execution and answer modes.
    results: replaces execution (e.g. parsing chain-of-thought answers): a
      function from the rows still to score to their scored rows.
    make_bar: `make_bar(total)` gives a tqdm-like progress bar over the
      programs (`update(n)`, `close()`), made once the output is validated.

  Returns:
    The scored rows in input order and the executor's isolation level (None
    when nothing was executed).

  Raises:
    DataError: the output file holds a malformed row before its end, or rows
      of other ids (the file is left unchanged).
  """
  partial = f"{os.fspath(output_path)}.partial"
  ids = {str(row["id"]) for row in rows}
  done: dict[str, dict[str, Any]] = {}
  for number, row in jsonl.iter_rows(partial, resume=True, missing_ok=True):
    if str(row.get("id")) not in ids:
      raise DataError(partial, number, "id", f"{row.get('id')!r} is not in the input; "
                      "remove the file or choose another output")
    done[str(row["id"])] = row
  todo = [row for row in rows if str(row["id"]) not in done]
  bar = make_bar(sum(len(g) for g in _groups(r["programs"] for r in rows))) if make_bar else None
  if bar is not None:
    bar.update(sum(len(g) for g in _groups(r["programs"] for r in rows if str(r["id"]) in done)))
  isolation = None
  with jsonl.Appender(partial) as out:
    if results is not None:
      _append(out, todo, results(todo), done)
    elif todo:
      with limits.executor() as executor:
        isolation = executor.isolation
        on_program = (lambda: bar.update(1)) if bar is not None else None
        _append(out, todo, score_results(executor, [r["answer"] for r in todo],
                                         [r["programs"] for r in todo], limits, on_program), done)
  if bar is not None:
    bar.close()
  os.replace(partial, output_path)
  return [done[str(row["id"])] for row in rows], isolation


def _append(out: jsonl.Appender, rows: Sequence[Mapping[str, Any]],
            scored: Iterable[dict[str, Any]], done: dict[str, dict[str, Any]]) -> None:
  for row, result in zip(rows, scored):
    done[str(row["id"])] = {"id": row["id"], **result, **row.get("keep", {})}
    out.append(done[str(row["id"])])
