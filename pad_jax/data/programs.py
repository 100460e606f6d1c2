"""The program-dataset JSONL format: what the teacher writes and training reads.

One JSON object per line:

  {"id": "gsm8k-train-00042", "question": "...",
   "program": "def solution():\\n    ...\\n    return result\\n",
   "answer": 18.0, "teacher": "gpt-3.5-turbo", "prompt_variant": 0,
   "sample": 3, ...any extra keys...}

* `id` (non-empty string), `question` (non-empty string);
* `program`: Python source with a top-level `def solution()` callable with no
  arguments (checked with `ast`, never executed here);
* `answer`: the gold answer, a finite JSON number;
* provenance: `teacher` (non-empty string), `prompt_variant` (int or string),
  `sample` (int >= 0);
* any other keys are kept in `ProgramRecord.extra` and written back unchanged.

`read_programs` validates every row and raises `DataError` naming the file,
line and field. `ProgramWriter` appends rows with flush + fsync so that a killed
job leaves at most a torn last line, which `read_programs(...,
allow_torn_tail=True)` drops and a new `ProgramWriter` cuts off before
appending: the resume rule of `pad_jax.jsonl`, which does all the I/O here.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import pathlib
from typing import Any, Iterable, Optional, Union

from pad_jax import jsonl
from pad_jax.errors import DataError

PathLike = Union[str, os.PathLike]

REQUIRED_FIELDS = ("id", "question", "program", "answer", "teacher",
                   "prompt_variant", "sample")


@dataclasses.dataclass(frozen=True)
class ProgramRecord:
  """One (question, program) training pair with its provenance.

  Attributes:
    id: the question's id (e.g. `gsm8k-train-00042`); several samples of one
      question share it.
    question: the problem text (the student's input).
    program: Python source defining `solution()` (the student's target).
    answer: the gold answer.
    teacher: which teacher wrote the program (a model name, `gold`,
      `synthetic`, ...).
    prompt_variant: which prompt produced it (an index or a name).
    sample: the sample index for this question and prompt.
    extra: any other JSON keys, kept and written back unchanged.
  """
  id: str
  question: str
  program: str
  answer: float
  teacher: str
  prompt_variant: Union[int, str]
  sample: int
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    # JSON makes no int/float distinction; keep answers uniformly float.
    if isinstance(self.answer, int) and not isinstance(self.answer, bool):
      object.__setattr__(self, "answer", float(self.answer))

  def to_json(self) -> dict[str, Any]:
    """The JSONL row: required fields first, then `extra` keys."""
    row = {field: getattr(self, field) for field in REQUIRED_FIELDS}
    row.update(self.extra)
    return row


def check_program(program: str) -> Optional[str]:
  """Why `program` is not a valid dataset program, or None if it is.

  A valid program parses as Python and defines, at top level, a (non-async)
  function `solution` that can be called with no arguments.

  Args:
    program: Python source.

  Returns:
    None, or a one-line reason.
  """
  try:
    tree = ast.parse(program)
  except SyntaxError as e:
    return f"not valid Python: {e.msg} (program line {e.lineno})"
  except ValueError as e:  # e.g. NUL bytes in the source.
    return f"not valid Python: {e}"
  found = None
  for node in tree.body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
        node.name == "solution"):
      found = node
  if found is None:
    return "does not define a top-level function solution()"
  if isinstance(found, ast.AsyncFunctionDef):
    return "solution() must be a plain function, not async"
  args = found.args
  positional = args.posonlyargs + args.args
  if len(positional) > len(args.defaults) or any(
      default is None for default in args.kw_defaults):
    return "solution() must be callable with no arguments"
  return None


def record_from_json(row: dict[str, Any], path: PathLike,
                     line: int) -> ProgramRecord:
  """Validates one parsed JSONL row; DataError names `path:line` and field."""
  # Checked in the order of REQUIRED_FIELDS, so the first bad field is named.
  record_id = jsonl.get_text(row, "id", path, line)
  question = jsonl.get_text(row, "question", path, line)
  program = jsonl.get_text(row, "program", path, line)
  reason = check_program(program)
  if reason is not None:
    raise DataError(path, line, "program", reason)
  answer = jsonl.get_number(row, "answer", path, line)
  teacher = jsonl.get_text(row, "teacher", path, line)
  if "prompt_variant" not in row:
    raise DataError(path, line, "prompt_variant", "missing field")
  variant = row["prompt_variant"]
  if isinstance(variant, bool) or not isinstance(variant, (int, str)):
    raise DataError(path, line, "prompt_variant",
                    f"expected an integer or a string, got "
                    f"{json.dumps(variant)[:40]}")
  if "sample" not in row:
    raise DataError(path, line, "sample", "missing field")
  sample = row["sample"]
  if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
    raise DataError(path, line, "sample",
                    f"expected an integer >= 0, got {json.dumps(sample)[:40]}")
  return ProgramRecord(
      id=record_id, question=question, program=program, answer=answer,
      teacher=teacher, prompt_variant=variant, sample=sample,
      extra={k: v for k, v in row.items() if k not in REQUIRED_FIELDS})


def read_programs(path: PathLike,
                  allow_torn_tail: bool = False) -> list[ProgramRecord]:
  """Reads and validates a program-dataset JSONL file.

  Args:
    path: the JSONL file.
    allow_torn_tail: apply the resume rule of `pad_jax.jsonl`: drop (with a
      warning) an unfinished last line, i.e. a row a killed writer did not
      finish. Resumable jobs pass True; otherwise such a line is an error.

  Returns:
    The records in file order.

  Raises:
    DataError: missing file, bad JSON, a missing or invalid field.
  """
  return [record_from_json(row, path, number)
          for number, row in jsonl.iter_rows(path, resume=allow_torn_tail)]


def _row(record: ProgramRecord, path: PathLike, row_number: int) -> dict[str, Any]:
  """Validates `record` and returns its JSON row."""
  if not isinstance(record, ProgramRecord):
    raise TypeError(f"expected a ProgramRecord, got {type(record).__name__}")
  clash = sorted(set(record.extra) & set(REQUIRED_FIELDS))
  if clash:
    raise DataError(path, row_number, clash[0],
                    "extra key repeats a required field")
  row = record.to_json()
  # Validate exactly what a reader will see.
  record_from_json(row, path, row_number)
  try:
    jsonl.dumps(row)
  except (TypeError, ValueError) as e:
    raise DataError(path, row_number, None,
                    f"record is not JSON-serialisable: {e}") from e
  return row


def write_programs(path: PathLike, records: Iterable[ProgramRecord]) -> int:
  """Writes `records` to `path`, replacing it atomically.

  Every record is validated first; a bad one raises `DataError` (its `line`
  is the row it would have had) and leaves any existing file untouched.

  Args:
    path: the JSONL file to (over)write; parent directories are created.
    records: the records.

  Returns:
    The number of rows written.
  """
  return jsonl.write_rows(path, [_row(r, path, i) for i, r in enumerate(records, start=1)])


class ProgramWriter:
  """Appends validated records to a JSONL file, durably (a `jsonl.Appender`).

  Opening a file whose last line is torn cuts that line off first, so
  appended rows never merge with it; a malformed line before the end is a
  DataError and nothing is changed.

    with ProgramWriter("programs.jsonl") as writer:
      for record in records:
        writer.write(record)
  """

  def __init__(self, path: PathLike, sync_every: int = 1):
    """Opens `path` for appending (creating it and its directory if needed).

    Args:
      path: the JSONL file.
      sync_every: flush + fsync after this many rows (1 = every row).
    """
    self._out = jsonl.Appender(path, sync_every=sync_every)
    self.path = self._out.path
    self.rows_written = 0

  @property
  def repaired_bytes(self) -> int:
    return self._out.repaired_bytes

  def write(self, record: ProgramRecord) -> None:
    """Validates and appends one record (DataError if it is invalid)."""
    row = _row(record, self.path, self._out.existing_rows + self.rows_written + 1)
    self._out.append(row)
    self.rows_written += 1

  def write_many(self, records: Iterable[ProgramRecord]) -> None:
    """Appends several records."""
    for record in records:
      self.write(record)

  def flush(self) -> None:
    """Flushes Python's buffer and fsyncs the file."""
    self._out.flush()

  def close(self) -> None:
    """Flushes, fsyncs and closes; further writes raise."""
    self._out.close()

  def __enter__(self) -> "ProgramWriter":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
