"""Verification of programs against gold answers: execute, compare, dedup, count.

The one per-program logic of every verifier: the teacher's single process
(`pad_jax.teacher.verify`), its Apache Beam pipeline
(`pad_jax.teacher.beam_verify`) and the pipeline's verify stage for the
synthetic programs (`pad_jax.pipeline.verify_stage`). Each keeps its own
input and output files; what a program's verdict is, which programs are
duplicates and what is counted are decided here:

  verdicts = [from_completion(row) for row in rows]   # or Verdict(row, program, "")
  execute(executor, verdicts)       # status, value, match under every answer mode
  kept, duplicates = select(verdicts, "pad")
  counts = tally(verdicts, "pad")

A verdict's `row` needs `id` and `answer`; `prompt_variant` and `sample`
order the kept programs and group the counts.
"""

from __future__ import annotations

import collections
import dataclasses
import types
from typing import Any, Optional, Sequence

from pad_jax import answers
from pad_jax.execution.executor import Executor
from pad_jax.execution.extraction import extract_program

EXTRACTION_FAILED = "extraction_failed"
WRONG_ANSWER = "wrong_answer"


@dataclasses.dataclass
class Verdict:
  """What verification found for one program (or completion) row.

  Attributes:
    row: the input row (`id`, `answer`, and optionally `prompt_variant`,
      `sample` and whatever the caller writes out).
    program: the program to execute; None when no program could be
      extracted.
    status: the executor's status, `EXTRACTION_FAILED`, or "" before
      `execute`.
    value: what the program returned.
    match: answer mode -> whether `value` is the gold answer under it.
  """
  row: dict[str, Any]
  program: Optional[str]
  status: str
  value: Any = None
  match: dict[str, bool] = dataclasses.field(default_factory=dict)


def from_completion(row: dict[str, Any]) -> Verdict:
  """A verdict to execute for a completion row: its `text`'s extracted program."""
  return Verdict(row=row, program=extract_program(row.get("text")), status="")


def execute(executor: Executor, verdicts: list[Verdict],
            seen: Optional[dict[str, Any]] = None) -> list[Verdict]:
  """Executes the verdicts' programs (each distinct text once) and compares their values.

  Args:
    executor: a started executor.
    verdicts: verdicts to fill in (status, value, match), in place.
    seen: program text -> ExecResult of earlier calls (updated), so a text
      seen before is not run again.

  Returns:
    `verdicts`.
  """
  if not verdicts:
    return []
  seen = {} if seen is None else seen
  fresh = list(dict.fromkeys(v.program for v in verdicts
                             if v.program is not None and v.program not in seen))
  for program, result in zip(fresh, executor.run(fresh) if fresh else []):
    seen[program] = result
  for verdict in verdicts:
    if verdict.program is None:
      verdict.status = EXTRACTION_FAILED
    else:
      result = seen[verdict.program]
      verdict.status = result.status
      verdict.value = result.value
    ok = verdict.status == "ok"
    verdict.match = {m: ok and answers.answers_match(verdict.value, verdict.row.get("answer"), m)
                     for m in answers.MODES}
  return verdicts


def normalize_program(program: str) -> str:
  """Canonical form for duplicate detection: blind to comments, docstrings and spacing.

  Two programs are the same when they compile to the same bytecode, names
  and constants. Compiling (C) is several times cheaper than an AST round
  trip, which matters at PaD's scale (55,000 programs).
  """
  try:
    code = compile(program, "<program>", "exec", dont_inherit=True)
  except (SyntaxError, ValueError):
    return " ".join(program.split())
  return repr(_code_signature(code))


def _code_signature(code: types.CodeType) -> tuple:
  consts = list(code.co_consts)
  if code.co_name != "<module>" and consts:
    consts[0] = None  # A function's first constant is its docstring (or None).
  return (code.co_code,
          tuple(_code_signature(c) if isinstance(c, types.CodeType) else (type(c).__name__, repr(c))
                for c in consts),
          code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars)


def select(verdicts: Sequence[Verdict], mode: str) -> tuple[list[Verdict], int]:
  """The correct verdicts sorted by (id, variant, sample), minus duplicates per question.

  Args:
    verdicts: executed verdicts.
    mode: the answer mode that decides which are correct.

  Returns:
    (kept verdicts, number of duplicates dropped). A duplicate is a program
    of the same question with the same `normalize_program` form.
  """
  correct = [v for v in verdicts if v.match.get(mode)]
  correct.sort(key=lambda v: (str(v.row["id"]), str(v.row.get("prompt_variant")),
                              int(v.row.get("sample", 0))))
  texts_per_question: dict[str, set[str]] = {}
  for verdict in correct:
    texts_per_question.setdefault(verdict.row["id"], set()).add(verdict.program)
  seen: set[tuple[str, str]] = set()
  normalized: dict[str, str] = {}
  kept, duplicates = [], 0
  for verdict in correct:
    question = verdict.row["id"]
    if len(texts_per_question[question]) == 1:
      signature = (question, verdict.program)  # Nothing to tell apart: skip compiling.
    else:
      if verdict.program not in normalized:
        normalized[verdict.program] = normalize_program(verdict.program)
      signature = (question, normalized[verdict.program])
    if signature in seen:
      duplicates += 1
      continue
    seen.add(signature)
    kept.append(verdict)
  return kept, duplicates


@dataclasses.dataclass
class Tally:
  """What a set of verdicts came to.

  Attributes:
    status_counts: status -> verdicts, in first-seen order ("ok" counts every
      program that ran, right or wrong).
    correct: answer mode -> correct programs (every mode of `answers.MODES`).
    wrong_answer: programs that ran but are not correct under the mode.
    by_variant: prompt variant (as text) -> [verdicts, correct under the mode].
  """
  status_counts: dict[str, int]
  correct: dict[str, int]
  wrong_answer: int
  by_variant: dict[str, list[int]]

  def outcome_counts(self) -> dict[str, int]:
    """`status_counts` with "ok" split into "ok" (correct) and `WRONG_ANSWER`."""
    counts = {s: n for s, n in self.status_counts.items() if s != "ok"}
    correct = self.status_counts.get("ok", 0) - self.wrong_answer
    if correct:
      counts["ok"] = correct
    if self.wrong_answer:
      counts[WRONG_ANSWER] = self.wrong_answer
    return counts


def tally(verdicts: Sequence[Verdict], mode: str) -> Tally:
  """Counts executed verdicts by status, correctness and prompt variant."""
  status_counts: collections.Counter = collections.Counter()
  correct = {m: 0 for m in answers.MODES}
  wrong = 0
  by_variant: dict[str, list[int]] = {}
  for verdict in verdicts:
    status_counts[verdict.status] += 1
    for m in correct:
      correct[m] += bool(verdict.match.get(m))
    right = bool(verdict.match.get(mode))
    wrong += verdict.status == "ok" and not right
    entry = by_variant.setdefault(str(verdict.row.get("prompt_variant")), [0, 0])
    entry[0] += 1
    entry[1] += right
  return Tally(dict(status_counts), correct, wrong, by_variant)
