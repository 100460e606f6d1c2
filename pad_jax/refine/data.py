"""Refinement training data: (question, faulty program, feedback) -> verified program.

Two sources, each executed in the real sandbox (`pad_jax.execution`):

* `mutation:<operator>`: the operators of `pad_jax.refine.mutations` applied
  to every verified program;
* `student` (`student:round_<k>` for the student of refinement round k): the
  student's own failures on the training questions (`pad_jax.refine.student`),
  paired with a verified program of the same question.

* `verified`: a verified program that the trigger flags although it is
  right (a given the question implies but does not write), as its own
  target: the student learns to keep it.

Every candidate is judged the same way (`judge`): one that still returns the
right answer is discarded (`still_correct`, except a flagged `verified` one);
one that inference would not refine is discarded too (`not_triggered`: it
runs, returns a number and copies its givens from the question, so only the
gold answer could tell it is wrong, and there is no feedback to train on that
inference could give); every other one (`kept`) becomes a row whose feedback
is exactly `feedback.refinement_feedback(result, question, program)`, the
text inference shows the student.

Rows of the refinement file (`refine.jsonl`):

  id           `<question id>/<source>/<n>` (unique, stable across reruns)
  question_id  the question's id (train/validation are carved by it)
  question, program (the faulty one), feedback, status (the executor's)
  target       the verified program the student should write
  answer       the gold answer (for the validation metric; never in the input)
  source       `mutation:<operator>`, `student` or `student:round_<k>`

`build` appends rows durably as it goes and records each finished source
program in `progress.jsonl`; a rerun after a kill skips finished programs and
never writes a row id twice (mutants are drawn from a seeded generator, so a
redone program yields the same rows).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import pathlib
import random
import sys
from typing import Any, Iterator, Optional, Sequence

from tqdm import tqdm

from pad_jax import jsonl
from pad_jax.data.programs import ProgramRecord
from pad_jax.execution.executor import ExecResult
from pad_jax.execution.limits import ExecLimits
from pad_jax.execution import feedback as feedback_lib
from pad_jax.refine import mutations

ROWS_FILE = "refine.jsonl"
VERIFIED = "verified"  # Source of the rows that keep a flagged correct program.
PROGRESS_FILE = "progress.jsonl"
REPORT_FILE = "report.json"
_CHUNK = 16  # Programs per executor call and per durable write.


@dataclasses.dataclass(frozen=True)
class Candidate:
  """A faulty program to execute, and what it becomes if it is wrong."""
  row_id: str
  record: str           # The progress key of the source program.
  question_id: str
  question: str
  program: str
  target: str
  answer: float
  source: str
  # What the executor runs, when it differs from `program` (a student's
  # prediction runs as `scoring.program_to_run` makes it, as at inference).
  executed: Optional[str] = None


def record_key(record: ProgramRecord) -> str:
  return f"{record.id}:{record.prompt_variant}:{record.sample}"


def _rng(seed: int, *parts: Any) -> random.Random:
  digest = hashlib.sha256(":".join(map(str, (seed,) + parts)).encode()).digest()
  return random.Random(int.from_bytes(digest[:8], "big"))


def mutation_candidates(record: ProgramRecord, operators: Sequence[str] = mutations.OPERATORS,
                        per_operator: int = 1, seed: int = 0) -> list[Candidate]:
  """The distinct mutants of one verified program (not yet executed)."""
  key = record_key(record)
  seen = {record.program}
  # The verified program itself: a row (its own target) only if the trigger
  # flags it, e.g. a constant the question implies (`minutes_per_hour = 60`),
  # so that the student learns to keep such a program.
  out = [Candidate(row_id=f"{record.id}/{VERIFIED}/{record.prompt_variant}.{record.sample}",
                   record=key, question_id=record.id, question=record.question,
                   program=record.program, target=record.program, answer=record.answer,
                   source=VERIFIED)]
  for operator in operators:
    for n in range(per_operator):
      mutant = mutations.mutate(record.program, operator, _rng(seed, key, operator, n))
      if mutant is None or mutant in seen:
        continue
      seen.add(mutant)
      out.append(Candidate(
          row_id=f"{record.id}/mutation:{operator}/{record.prompt_variant}.{record.sample}.{n}",
          record=key, question_id=record.id, question=record.question, program=mutant,
          target=record.program, answer=record.answer, source=f"mutation:{operator}"))
  return out


def judge(candidates: Sequence[Candidate], results: Sequence[ExecResult],
          limits: ExecLimits) -> tuple[list[dict[str, Any]], collections.Counter]:
  """Rows for the candidates inference would refine; counts of each outcome per source.

  A candidate becomes a row only when `feedback.refinement_feedback` (the
  inference trigger) gives it feedback, and the row carries that text.
  """
  rows, counts = [], collections.Counter()
  for candidate, result in zip(candidates, results):
    text = feedback_lib.refinement_feedback(result, candidate.question, candidate.program)
    correct = result.ok and limits.matches(result.value, candidate.answer)
    if correct and not (candidate.source == VERIFIED and text is not None):
      counts[f"{candidate.source}:still_correct"] += 1
      continue
    if text is None:  # Runs and returns a number: wrong, but inference cannot tell.
      counts[f"{candidate.source}:not_triggered"] += 1
      continue
    counts[f"{candidate.source}:kept"] += 1
    rows.append({"id": candidate.row_id, "question_id": candidate.question_id,
                 "question": candidate.question, "program": candidate.program,
                 "feedback": text, "status": result.status,
                 "target": candidate.target, "answer": candidate.answer,
                 "source": candidate.source})
  return rows, counts


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
  for start in range(0, len(items), size):
    yield items[start:start + size]


def read_progress(out_dir: pathlib.Path) -> dict[str, dict[str, Any]]:
  """Finished source programs: key -> their progress row."""
  return {row["record"]: row for row in jsonl.read_resumable(out_dir / PROGRESS_FILE)}


def run_candidates(groups: Sequence[tuple[str, list[Candidate]]], out_dir: pathlib.Path,
                   limits: ExecLimits, progress: bool = True, desc: str = "refine") -> None:
  """Executes each group's candidates; appends wrong ones and marks groups done.

  Args:
    groups: (progress key, its candidates); keys already in progress.jsonl
      are skipped.
    out_dir: the output directory.
    limits: executor limits and answer mode.
    progress: tqdm bar on stderr.
    desc: the bar's label.
  """
  done = read_progress(out_dir)
  written = {row["id"] for row in jsonl.read_resumable(out_dir / ROWS_FILE)}
  todo = [(key, c) for key, c in groups if key not in done]
  with jsonl.Appender(out_dir / ROWS_FILE) as rows_out, \
       jsonl.Appender(out_dir / PROGRESS_FILE) as progress_out, \
       limits.executor() as executor, \
       tqdm(total=len(groups), initial=len(groups) - len(todo), desc=desc, unit="prog",
            file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
    for chunk in _chunks(todo, _CHUNK):
      candidates = [c for _, group in chunk for c in group]
      results = (executor.run([c.executed or c.program for c in candidates])
                 if candidates else [])
      by_key: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
      new_rows = []
      for candidate, result in zip(candidates, results):
        rows, counts = judge([candidate], [result], limits)
        by_key[candidate.record].update(counts)
        new_rows.extend(r for r in rows if r["id"] not in written)
        written.update(r["id"] for r in rows)
      # Rows first, then the programs they came from: a kill in between redoes
      # the chunk, and the row ids already written are not written again.
      rows_out.append_many(new_rows)
      progress_out.append_many({"record": key, "counts": dict(by_key[key])} for key, _ in chunk)
      bar.update(len(chunk))


def build_mutations(records: Sequence[ProgramRecord], out_dir: pathlib.Path,
                    limits: ExecLimits = ExecLimits(),
                    operators: Sequence[str] = mutations.OPERATORS, per_operator: int = 1,
                    seed: int = 0, progress: bool = True) -> None:
  """Error-injection rows for every verified program (source (a))."""
  for operator in operators:
    if operator not in mutations.MUTATORS:
      raise ValueError(f"unknown mutation operator {operator!r}; known: {mutations.OPERATORS}")
  groups = [(record_key(r), mutation_candidates(r, operators, per_operator, seed))
            for r in records]
  run_candidates(groups, out_dir, limits, progress, desc="mutate")


def summarize(out_dir: pathlib.Path) -> dict[str, Any]:
  """The report: rows per source, discarded candidates, inputs, programs done."""
  progress_rows = read_progress(out_dir)
  counts: collections.Counter = collections.Counter()
  for row in progress_rows.values():
    counts.update(row.get("counts", {}))
  rows = jsonl.read_resumable(out_dir / ROWS_FILE)
  by_source = collections.Counter(r["source"] for r in rows)
  by_status = collections.Counter(r["status"] for r in rows)
  sources = sorted({k.rsplit(":", 1)[0] for k in counts} | set(by_source))
  return {
      "rows": len(rows),
      "source_programs": len(progress_rows),
      "by_source": {s: {"kept": counts.get(f"{s}:kept", 0),
                        "discarded_still_correct": counts.get(f"{s}:still_correct", 0),
                        "discarded_not_triggered": counts.get(f"{s}:not_triggered", 0),
                        "rows": by_source.get(s, 0)} for s in sources},
      "discarded_not_triggered": sum(v for k, v in counts.items()
                                     if k.endswith(":not_triggered")),
      "by_status": dict(sorted(by_status.items())),
      "questions": len({r["question_id"] for r in rows}),
  }
