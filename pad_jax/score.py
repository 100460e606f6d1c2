r"""Execute programs from a JSONL file in the sandbox and score their answers.

  python -m pad_jax.score --input=IN.jsonl --output=OUT.jsonl \
      --summary=SUMMARY.json [--program_field=program --answer_field=answer \
      --workers=N --timeout_s=S --memory_mb=M --mode=pad|strict]

Input rows: `id`, a program (`--program_field`) and the gold answer
(`--answer_field`). A program that parses and defines `solution()` runs
exactly as written; other text (a raw completion around a code block) has
extraction (`pad_jax.execution.extraction`) applied first. The program field
may also hold a list of K programs: the row's answer is then the majority
vote of the runnable ones (self-consistency).

Output rows: `id`, `status`, `value`, `correct`, `error`, `seconds`,
`num_programs`, `runnable_programs`. Summary: `n`, `accuracy`,
`runnable_rate`, `status_counts`, `programs_per_s`, `isolation`.

The whole input is validated before anything runs: a malformed row exits
with status 2 and a `file:line: field 'f': message` error. Results stream to
`OUT.jsonl.partial`, which is renamed to `OUT.jsonl` at the end; rerunning
after an interruption resumes from the partial file (see
`pad_jax.execution.scoring`).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Optional

from absl import flags
import tqdm

from pad_jax import answers
from pad_jax import atomic
from pad_jax import cli
from pad_jax import jsonl
from pad_jax.errors import DataError
from pad_jax.execution import flags as exec_flags
from pad_jax.execution import scoring
from pad_jax.execution.limits import ExecLimits


def read_rows(path: str, id_field: str = "id", program_field: str = "program",
              answer_field: str = "answer") -> list[dict[str, Any]]:
  """Reads and validates the input; raises DataError naming file:line:field."""
  rows, seen = [], {}
  for number, row in jsonl.iter_rows(path):
    for field in (id_field, program_field, answer_field):
      if field not in row:
        raise DataError(path, number, field, "missing")
    row_id = row[id_field]
    if not isinstance(row_id, (str, int)) or isinstance(row_id, bool):
      raise DataError(path, number, id_field, "must be a string or an integer")
    if str(row_id) in seen:
      raise DataError(path, number, id_field, f"duplicate id {row_id!r} (line {seen[str(row_id)]})")
    seen[str(row_id)] = number
    programs = row[program_field]
    listed = programs if isinstance(programs, list) else [programs]
    if not listed or not all(p is None or isinstance(p, str) for p in listed):
      raise DataError(path, number, program_field,
                      "must be a string, null, or a non-empty list of them")
    if answers.parse_number(row[answer_field]) is None:
      raise DataError(path, number, answer_field, f"not a finite number: {row[answer_field]!r}")
    rows.append({"id": row_id, "programs": programs, "answer": row[answer_field]})
  return rows


def score_file(input_path: str, output_path: str, summary_path: Optional[str],
               limits: ExecLimits = ExecLimits(), *, id_field: str = "id",
               program_field: str = "program", answer_field: str = "answer",
               progress: bool = True) -> dict[str, Any]:
  """Scores `input_path` into `output_path` (+ summary); returns the summary."""
  rows = read_rows(input_path, id_field, program_field, answer_field)
  n_programs = sum(len(r["programs"]) if isinstance(r["programs"], list) else 1 for r in rows)
  start = time.monotonic()
  scored, isolation = scoring.score_to_file(
      rows, output_path, limits,
      make_bar=lambda total: tqdm.tqdm(total=total, unit="program", desc="score",
                                       file=sys.stderr, disable=not progress))
  elapsed = time.monotonic() - start
  summary = {
      **scoring.summarize(scored),
      "programs_per_s": round(n_programs / elapsed, 2) if elapsed > 0 and n_programs else None,
      "mode": limits.answer_mode,
      "exec_mode": limits.exec_mode,
      "isolation": isolation,
  }
  if summary_path:
    atomic.write_json(summary_path, summary)
  return summary


def main(argv: list[str]) -> int:
  cli.no_arguments(argv)
  cli.require(input=_INPUT.value, output=_OUTPUT.value)
  summary = score_file(_INPUT.value, _OUTPUT.value, _SUMMARY.value, exec_flags.limits(),
                       id_field=_ID_FIELD.value, program_field=_PROGRAM_FIELD.value,
                       answer_field=_ANSWER_FIELD.value)
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
  exec_flags.define()
  flags.adopt_module_key_flags(exec_flags)  # List the executor flags in --help.
  cli.run(main)
