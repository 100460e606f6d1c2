"""Verification: completions -> executed, checked, deduplicated programs.

For every row of `completions.jsonl`: extract the program, run it in the
sandboxed executor, compare its value with the gold answer under both answer
modes, keep the programs that are correct under the chosen mode (PaD's
lenient `pad` by default), drop exact duplicates per question (same code once
whitespace, comments and docstrings are normalised away) and write

* `programs.jsonl`: the project's program-dataset format (`id`, `question`,
  `program`, `answer`, `teacher`, `prompt_variant`, `sample`), sorted by id;
* `report.json` and `report.png`: see `pad_jax.teacher.report`.

`StreamingVerifier` does this while completions arrive (a background thread
executes micro-batches as they come), `verify_dir` redoes it from
`completions.jsonl` alone. Both are deterministic: the outputs depend only on
the set of completions, not on their arrival order. What a completion's
verdict is, which programs are duplicates and what is counted is
`pad_jax.execution.verification` (shared with the Beam verifier and the
pipeline's verify stage); this module reads and writes the files.
"""

from __future__ import annotations

import json
import os
import pathlib
import queue
import sys
import threading
import time
from typing import Any, Iterable, Optional, Union

from absl import logging
from tqdm import tqdm

from pad_jax import answers
from pad_jax import jsonl
from pad_jax.data.programs import ProgramRecord
from pad_jax.data.programs import write_programs
from pad_jax.errors import DataError
from pad_jax.execution import verification
from pad_jax.execution.limits import ExecLimits
from pad_jax.execution.verification import Verdict
from pad_jax.teacher import cache as cache_lib
from pad_jax.teacher import report as report_lib

PROGRAMS_FILE = "programs.jsonl"
MANIFEST_FILE = "run.json"
_MICRO_BATCH = 1024

PathLike = Union[str, os.PathLike]


class StreamingVerifier:
  """Verifies completion rows in a background thread as they are submitted.

    verifier = StreamingVerifier(ExecLimits(workers=2))
    verifier.submit(row) ...              # any thread
    verdicts = verifier.finish()          # waits, returns all verdicts
  """

  def __init__(self, limits: ExecLimits = ExecLimits(), progress: bool = False,
               total: Optional[int] = None):
    """Starts the verifier thread (and its executor).

    Args:
      limits: how programs are executed, and the answer mode that decides
        which are kept (`limits.answer_mode`).
      progress: show a tqdm bar of verified completions.
      total: the expected number of completions, for the bar's ETA.
    """
    self.limits = limits
    self.progress = progress
    self.total = total
    self._queue: queue.Queue = queue.Queue()
    self._verdicts: list[Verdict] = []
    self._error: Optional[BaseException] = None
    self._seen: set[str] = set()
    self._results: dict[str, Any] = {}  # Program text -> ExecResult (same text, same run).
    self._thread = threading.Thread(target=self._run, name="verifier", daemon=True)
    self._thread.start()

  def submit(self, row: dict[str, Any]) -> None:
    """Queues one completion row (extraction happens here, in the caller's
    thread, so it overlaps with the executor working on earlier rows)."""
    key = row.get("key")
    if key in self._seen:
      return
    self._seen.add(key)
    self._queue.put(verification.from_completion(row))

  def submit_many(self, rows: Iterable[dict[str, Any]]) -> None:
    for row in rows:
      self.submit(row)

  def finish(self) -> list[Verdict]:
    self._queue.put(None)
    self._thread.join()
    if self._error is not None:
      raise self._error
    return self._verdicts

  @property
  def verified(self) -> int:
    return len(self._verdicts)

  def _run(self) -> None:
    try:
      bar = tqdm(total=self.total, desc="verify", unit="prog", disable=not self.progress,
                 file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
      with bar, self.limits.executor() as executor:
        done = False
        while not done:
          batch = [self._queue.get()]
          while len(batch) < _MICRO_BATCH:
            try:
              batch.append(self._queue.get_nowait())
            except queue.Empty:
              break
          if batch[-1] is None:
            done = True
            batch.pop()
          self._verdicts.extend(verification.execute(executor, batch, self._results))
          bar.update(len(batch))
          correct = sum(v.match.get(self.limits.answer_mode, False) for v in batch)
          bar.set_postfix_str(f"correct={correct}/{len(batch)} in last batch", refresh=False)
    except BaseException as e:  # pylint: disable=broad-except
      self._error = e
      while True:  # Unblock producers; drain.
        try:
          if self._queue.get_nowait() is None:
            break
        except queue.Empty:
          break


def select_programs(verdicts: list[Verdict], mode: str) -> tuple[list[ProgramRecord], int]:
  """The kept programs (`verification.select`) as program-dataset records.

  Returns:
    (ProgramRecords to write, sorted by (id, variant, sample); number of
    duplicates dropped).
  """
  kept, duplicates = verification.select(verdicts, mode)
  return [_record(v) for v in kept], duplicates


def _record(verdict: Verdict) -> ProgramRecord:
  row = verdict.row
  return ProgramRecord(
      id=str(row["id"]), question=row["question"], program=verdict.program,
      answer=float(row["answer"]), teacher=str(row.get("teacher") or row.get("model")),
      prompt_variant=row.get("prompt_variant", 0), sample=int(row.get("sample", 0)),
      extra={"strict_match": bool(verdict.match.get("strict"))})


def write_outputs(out_dir: PathLike, verdicts: list[Verdict], answer_mode: str,
                  failed_rows: Iterable[dict[str, Any]] = (), manifest: Optional[dict] = None,
                  seconds: float = 0.0, budget: Optional[report_lib.TargetBudget] = None
                  ) -> dict[str, Any]:
  """Writes programs.jsonl, report.json and report.png; returns the report.

  Args:
    out_dir: the output directory.
    verdicts: every completion's verdict.
    answer_mode: which comparison keeps a program ("pad" or "strict").
    failed_rows: rows of failed.jsonl (those with no completion are counted).
    manifest: run.json's contents (provenance for the report).
    seconds: verification wall time.
    budget: the student's target budget (`report_lib.apply_budget`).
  """
  out_dir = pathlib.Path(out_dir)
  records, duplicates = select_programs(verdicts, answer_mode)
  records, budget_counts = report_lib.apply_budget(records, budget)
  write_programs(out_dir / PROGRAMS_FILE, records)
  return write_report(out_dir, verdicts, records, duplicates, answer_mode, failed_rows, manifest,
                      seconds, target_budget=budget_counts)


def write_report(out_dir: PathLike, verdicts: list[Verdict], records: list[Any],
                 duplicates: int, answer_mode: str, failed_rows: Iterable[dict[str, Any]] = (),
                 manifest: Optional[dict] = None, seconds: float = 0.0,
                 target_budget: Optional[dict[str, Any]] = None) -> dict[str, Any]:
  """Writes report.json and report.png for verdicts and kept records; returns the report.

  The one report of both verifiers (`verify_dir`, `beam_verify.verify_beam`).
  `failed_rows` whose key has a completion are not counted as failed.
  """
  completion_keys = {v.row.get("key") for v in verdicts}
  unresolved = {}
  for row in failed_rows:
    if row.get("key") not in completion_keys:
      unresolved[row.get("key")] = row
  report = report_lib.build_report(verdicts, records, duplicates, list(unresolved.values()),
                                   manifest or {}, answer_mode, seconds, target_budget)
  report_lib.write_verify_report(out_dir, report)
  return report


def read_report(out_dir: PathLike) -> dict[str, Any]:
  """The report.json that `write_report` wrote into `out_dir`."""
  return json.loads(jsonl.read_text(pathlib.Path(out_dir) / report_lib.REPORT_FILE))


def read_manifest(out_dir: PathLike) -> dict[str, Any]:
  """run.json of a synthesis output directory ({} if there is none)."""
  path = pathlib.Path(out_dir) / MANIFEST_FILE
  if not path.exists():
    return {}
  try:
    manifest = json.loads(jsonl.read_text(path))
  except json.JSONDecodeError as e:
    raise DataError(path, e.lineno, None, f"invalid JSON ({e.msg})") from None
  if not isinstance(manifest, dict):
    raise DataError(path, None, None, f"expected a JSON object, got a JSON "
                    f"{jsonl.json_type(manifest)}")
  return manifest


def read_completions(path: PathLike) -> list[dict[str, Any]]:
  """The rows of a completions.jsonl, one per key (a torn last line is dropped).

  Raises:
    DataError: a missing file, or a row without a field verification needs
      or with a non-numeric answer (names file:line and field).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(path, None, None, "not found (is --in_dir a synthesis output directory?)")
  rows, keys = [], set()
  for number, row in jsonl.iter_rows(path, resume=True):
    for field in ("key", "id", "question", "answer", "text"):
      if field not in row:
        raise DataError(path, number, field, "missing field")
    if answers.parse_number(row["answer"]) is None:
      raise DataError(path, number, "answer", f"not a number: {jsonl.short(row['answer'])}")
    if row["key"] not in keys:
      keys.add(row["key"])
      rows.append(row)
  return rows


def verify_dir(in_dir: PathLike, limits: ExecLimits = ExecLimits(),
               out_dir: Optional[PathLike] = None, progress: bool = False) -> dict[str, Any]:
  """Re-verifies `in_dir/completions.jsonl` from scratch.

  Args:
    in_dir: a synthesis output directory (needs only completions.jsonl;
      failed.jsonl and run.json are used when present).
    limits: how programs are executed; `limits.answer_mode` decides which
      are kept.
    out_dir: where to write programs.jsonl / report.json / report.png
      (default: `in_dir`).
    progress: show a tqdm progress bar.

  Returns:
    The report dict.

  Raises:
    DataError: no completions.jsonl, a malformed row or run.json (names
      file:line and field).
  """
  in_dir = pathlib.Path(in_dir)
  rows = read_completions(in_dir / cache_lib.COMPLETIONS_FILE)
  manifest = read_manifest(in_dir)
  failed = jsonl.read_resumable(in_dir / cache_lib.FAILED_FILE)
  start = time.monotonic()
  verifier = StreamingVerifier(limits, progress=progress, total=len(rows))
  verifier.submit_many(rows)
  verdicts = verifier.finish()
  seconds = time.monotonic() - start
  report = write_outputs(out_dir or in_dir, verdicts, limits.answer_mode, failed, manifest,
                         seconds)
  logging.info("verified %d completions in %.1f s: kept %d programs for %d questions",
               len(verdicts), seconds, report["kept"], report["questions_with_program"])
  return report
