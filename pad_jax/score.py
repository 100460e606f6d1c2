r"""Execute programs from a JSONL file in the sandbox and score their answers.

  python -m pad_jax.score --input=IN.jsonl --output=OUT.jsonl \
      --summary=SUMMARY.json [--program_field=program --answer_field=answer \
      --workers=N --timeout_s=S --memory_mb=M --mode=pad|strict]

Input rows: `id`, a program (`--program_field`; a raw model completion is
fine: the teacher's `extract_program` is applied when it finds a program,
else the text is run as is) and the gold answer (`--answer_field`). The
program field may also hold a list of K programs: the row's answer is then
the majority vote of the runnable ones (self-consistency).

Output rows: `id`, `status`, `value`, `correct`, `error`, `seconds` (plus
`num_programs` and `runnable_programs` for K programs). Summary: `n`,
`accuracy`, `runnable_rate`, `status_counts`, `programs_per_s`,
`isolation`.

The whole input is validated before anything runs: a malformed row exits
with status 2 and a `file:line: field 'f': message` error. Results stream to
`OUT.jsonl.partial`, which is renamed to `OUT.jsonl` at the end; rerunning
after an interruption resumes from the partial file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Optional

from absl import app
from absl import flags
from absl import logging

from pad_jax import answers
from pad_jax import metrics
from pad_jax.errors import DataError
from pad_jax.execution import MODES as EXEC_MODES
from pad_jax.execution import ISOLATION_LEVELS, STATUSES, Executor


def read_rows(path: str, id_field: str, program_field: str,
              answer_field: str) -> list[dict[str, Any]]:
  """Reads and validates the input; raises DataError naming file:line:field."""
  if not os.path.exists(path):
    raise DataError(path, None, None, "no such file")
  rows, seen = [], set()
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except ValueError as e:
        raise DataError(path, number, None, f"not valid JSON ({e})") from None
      if not isinstance(row, dict):
        raise DataError(path, number, None, "a row must be a JSON object")
      for field in (id_field, program_field, answer_field):
        if field not in row:
          raise DataError(path, number, field, "missing")
      row_id = row[id_field]
      if not isinstance(row_id, (str, int)) or isinstance(row_id, bool):
        raise DataError(path, number, id_field, "must be a string or an integer")
      if str(row_id) in seen:
        raise DataError(path, number, id_field, f"duplicate id {row_id!r}")
      seen.add(str(row_id))
      programs = row[program_field]
      listed = programs if isinstance(programs, list) else [programs]
      if not listed or not all(p is None or isinstance(p, str) for p in listed):
        raise DataError(path, number, program_field,
                        "must be a string, null, or a non-empty list of them")
      if answers.parse_number(row[answer_field]) is None:
        raise DataError(path, number, answer_field,
                        f"not a finite number: {row[answer_field]!r}")
      rows.append({"id": row_id, "programs": programs,
                   "answer": row[answer_field]})
  return rows


def _extractor(enabled: bool, exec_mode: str):
  """The teacher's extract_program, or the identity when unavailable/off."""
  if not enabled or exec_mode != "return":  # extraction would drop prints
    return lambda text: text
  try:
    from pad_jax.teacher import extract_program  # pylint: disable=import-outside-toplevel
  except ImportError:
    logging.warning("pad_jax.teacher.extract_program unavailable; running texts as is")
    return lambda text: text
  def extract(text: Optional[str]) -> Optional[str]:
    program = extract_program(text) if text else None
    return program if program is not None else text
  return extract


def _read_done(partial: str) -> dict[str, dict[str, Any]]:
  """Rows already scored by an interrupted run; drops a torn last line."""
  done, good = {}, 0
  if os.path.exists(partial):
    with open(partial, "rb") as f:
      for line in f:
        if not line.endswith(b"\n"):
          break
        try:
          row = json.loads(line)
          done[str(row["id"])] = row
        except (ValueError, KeyError, TypeError):
          break
        good += len(line)
    os.truncate(partial, good)
  return done


def score_file(input_path: str, output_path: str, summary_path: Optional[str],
               *, id_field: str = "id", program_field: str = "program",
               answer_field: str = "answer", workers: Optional[int] = None,
               timeout_s: float = 5.0, memory_mb: int = 1024, mode: str = "pad",
               exec_mode: str = "return", isolation: str = "auto",
               extract: bool = True, progress: bool = True) -> dict[str, Any]:
  """Scores `input_path` into `output_path` (+ summary); returns the summary."""
  rows = read_rows(input_path, id_field, program_field, answer_field)
  partial = output_path + ".partial"
  done = _read_done(partial)
  todo = [r for r in rows if str(r["id"]) not in done]
  if done:
    logging.info("resuming: %d of %d rows already scored", len(rows) - len(todo), len(rows))
  extract_fn = _extractor(extract, exec_mode)
  groups = [r["programs"] if isinstance(r["programs"], list) else [r["programs"]] for r in todo]
  flat = (extract_fn(p) for group in groups for p in group)
  n_programs = sum(len(g) for g in groups)
  os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
  with Executor(workers=workers, timeout_s=timeout_s, memory_mb=memory_mb,
                mode=exec_mode, isolation=isolation) as executor, \
      open(partial, "a", encoding="utf-8") as out:
    start = time.monotonic()  # throughput of the pool, not its start-up
    results = executor.imap(flat)
    bar = _progress(n_programs, progress)
    for row, group in zip(todo, groups):
      group_results = [next(results) for _ in group]
      bar.update(len(group))
      scored = {"id": row["id"], **metrics.combine(group_results, row["answer"], mode)}
      if isinstance(row["programs"], list):
        scored["num_programs"] = len(group)
        scored["runnable_programs"] = sum(r.ok for r in group_results)
      out.write(json.dumps(scored) + "\n")
      out.flush()
      done[str(row["id"])] = scored
    bar.close()
    isolation_level = executor.isolation
  elapsed = time.monotonic() - start
  ordered = [done[str(r["id"])] for r in rows]
  os.replace(partial, output_path)
  fractions = metrics.summarize(ordered)
  summary = {
      "n": len(ordered),
      "accuracy": fractions["accuracy"],
      "runnable_rate": fractions["runnable_rate"],
      "status_counts": {s: sum(r["status"] == s for r in ordered) for s in STATUSES},
      "programs_per_s": round(n_programs / elapsed, 2) if elapsed > 0 and n_programs else None,
      "mode": mode,
      "exec_mode": exec_mode,
      "isolation": isolation_level,
  }
  if summary_path:
    tmp = summary_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=2)
      f.write("\n")
    os.replace(tmp, summary_path)
  return summary


class _NoBar:

  def update(self, n: int) -> None:
    pass

  def close(self) -> None:
    pass


def _progress(total: int, enabled: bool):
  if not enabled:
    return _NoBar()
  try:
    import tqdm  # pylint: disable=import-outside-toplevel
  except ImportError:
    return _NoBar()
  return tqdm.tqdm(total=total, unit="program", desc="score", file=sys.stderr)


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for flag in (_INPUT, _OUTPUT):
    if not flag.value:
      print(f"error: --{flag.name} is required", file=sys.stderr)
      return 2
  try:
    summary = score_file(
        _INPUT.value, _OUTPUT.value, _SUMMARY.value, id_field=_ID_FIELD.value,
        program_field=_PROGRAM_FIELD.value, answer_field=_ANSWER_FIELD.value,
        workers=_WORKERS.value, timeout_s=_TIMEOUT_S.value,
        memory_mb=_MEMORY_MB.value, mode=_MODE.value, exec_mode=_EXEC_MODE.value,
        isolation=_ISOLATION.value, extract=_EXTRACT.value)
  except DataError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(summary))
  return 0


# Flags are defined only when this module is the program (as in t5x), so that
# importing it as a library never clashes with another command's flags.
if __name__ == "__main__":
  _INPUT = flags.DEFINE_string("input", None, "JSONL file of programs to score.")
  _OUTPUT = flags.DEFINE_string("output", None, "JSONL file of per-row results.")
  _SUMMARY = flags.DEFINE_string("summary", None, "JSON file of summary metrics.")
  _ID_FIELD = flags.DEFINE_string("id_field", "id", "Field with the row id.")
  _PROGRAM_FIELD = flags.DEFINE_string(
      "program_field", "program",
      "Field with the program text (or a raw completion), or a list of them.")
  _ANSWER_FIELD = flags.DEFINE_string("answer_field", "answer", "Field with the gold answer.")
  _WORKERS = flags.DEFINE_integer("workers", None, "Executor workers (default: CPU count).")
  _TIMEOUT_S = flags.DEFINE_float("timeout_s", 5.0, "Wall-clock limit per program.")
  _MEMORY_MB = flags.DEFINE_integer("memory_mb", 1024, "Address-space limit per program.")
  _MODE = flags.DEFINE_enum("mode", "pad", list(answers.MODES),
                            "Answer comparison: pad (rounded) or strict (1e-3).")
  _EXEC_MODE = flags.DEFINE_enum("exec_mode", "return", list(EXEC_MODES),
                                 "Answer = what solution() returns, or the last printed number.")
  _ISOLATION = flags.DEFINE_enum("isolation", "auto", list(ISOLATION_LEVELS),
                                 "Sandbox isolation level (see docs/security.md).")
  _EXTRACT = flags.DEFINE_bool("extract", True,
                               "Apply the teacher's program extraction to each text.")
  app.run(main)
