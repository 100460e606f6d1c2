"""JSON Lines, the one way (a leaf module): validated reading, durable appending.

Every JSONL file pad-jax reads or writes goes through this module, so one
rule holds everywhere:

* Reading validates every line: invalid JSON, a line that is not a JSON
  object or bytes that are not UTF-8 raise `DataError` naming `file:line`.
* **The resume rule.** A job that appends rows and resumes after a crash
  (`Appender`, and readers called with `resume=True`) treats an unfinished
  final line (no trailing newline and not a whole JSON object: the write a
  kill tore) as never written: it is dropped and its work is redone. A
  malformed line anywhere else is an error naming `file:line`; nothing is
  truncated or skipped, and the file is left byte-identical. Outside a resume
  (`resume=False`) a torn last line is an error too.
* Appending writes whole lines, then flushes and fsyncs, before a row counts
  as done. Whole-file writes (`write_rows`) go through `pad_jax.atomic`.
"""

from __future__ import annotations

import json
import os
import pathlib
import threading
from typing import Any, Iterable, Iterator, Mapping, Optional, Union

from absl import logging

from pad_jax import answers
from pad_jax import atomic
from pad_jax.errors import DataError

PathLike = Union[str, os.PathLike]


def read_text(path: PathLike) -> str:
  """The file's text (UTF-8, a leading BOM dropped); DataError if unreadable."""
  try:
    data = pathlib.Path(path).read_bytes()
  except OSError as e:
    raise DataError(path, None, None, f"cannot read file: {e}") from e
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise DataError(path, data[:e.start].count(b"\n") + 1, None,
                    f"not UTF-8 text (byte {e.start}); is this the right file?") from e


def json_type(value: Any) -> str:
  """The JSON name of `value`'s type (for error messages)."""
  if isinstance(value, bool):
    return "boolean"
  if value is None:
    return "null"
  return {dict: "object", list: "array", str: "string", int: "number",
          float: "number"}.get(type(value), type(value).__name__)


def parse_object(line: Union[str, bytes], path: PathLike, number: int) -> dict[str, Any]:
  """Parses one line that must hold a JSON object (else DataError at path:number)."""
  try:
    row = json.loads(line)
  except json.JSONDecodeError as e:
    raise DataError(path, number, None, f"invalid JSON ({e.msg} at column {e.colno})") from e
  except UnicodeDecodeError as e:
    raise DataError(path, number, None, "not UTF-8 text; is this the right file?") from e
  if not isinstance(row, dict):
    raise DataError(path, number, None, f"expected a JSON object, got a JSON {json_type(row)}")
  return row


def get_text(row: dict[str, Any], field: str, path: PathLike,
             line: int, allow_empty: bool = False) -> str:
  """`row[field]` as a string; DataError if missing, not a string or empty."""
  if field not in row:
    raise DataError(path, line, field, "missing field")
  value = row[field]
  if not isinstance(value, str):
    raise DataError(path, line, field,
                    f"expected a string, got a JSON {json_type(value)}")
  if not allow_empty and not value.strip():
    raise DataError(path, line, field, "empty string")
  return value


def get_number(row: dict[str, Any], field: str, path: PathLike,
               line: int) -> float:
  """`row[field]` as a finite float; DataError if missing or not a number."""
  if field not in row:
    raise DataError(path, line, field, "missing field")
  value = row[field]
  number = None
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    number = answers.parse_number(value)
  if number is None:
    raise DataError(path, line, field,
                    f"expected a finite number, got {short(value)}")
  return number


def short(value: Any, limit: int = 40) -> str:
  text = json.dumps(value, ensure_ascii=False)
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _parse(path: pathlib.Path, resume: bool) -> tuple[list[tuple[int, dict[str, Any]]], int]:
  """The file's rows with their line numbers, and the byte length they span.

  Lines are checked in order, so the first problem in the file is the one
  reported. What follows the final newline counts as a row when it is a whole
  JSON object (a row that only lacks its newline); when it is not, it is a
  torn write: dropped under `resume` (the byte length then excludes it), an
  error otherwise. A killed writer can stop inside a multi-byte character, so
  only that unfinished line may hold invalid UTF-8.
  """
  try:
    data = path.read_bytes()
  except FileNotFoundError:
    raise DataError(path, None, None, "file not found") from None
  except IsADirectoryError:
    raise DataError(path, None, None, "is a directory, not a JSONL file") from None
  except OSError as e:
    raise DataError(path, None, None, f"cannot read file: {e}") from e
  bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
  lines = data[bom:].split(b"\n")
  tail = lines.pop()  # the bytes after the final newline
  texts = []
  for number, raw in enumerate(lines, start=1):
    try:
      texts.append((number, raw.decode("utf-8")))
    except UnicodeDecodeError as e:
      raise DataError(path, number, None, "not UTF-8 text; is this the right file?") from e
  tail_text = tail.decode("utf-8", errors="replace")
  first = next(((n, s) for n, s in texts + [(len(lines) + 1, tail_text)] if s.strip()), None)
  if first and first[1].lstrip().startswith("[") and not _parses(first[1]):
    raise DataError(path, first[0], None, "looks like a JSON array; expected JSONL (one JSON "
                    "object per line). Is this the right file?")
  rows = [(number, parse_object(text, path, number)) for number, text in texts if text.strip()]
  size = len(data)
  if tail.strip():
    number = len(lines) + 1
    if isinstance(_loads(tail_text), dict):
      if tail_text != tail.decode("utf-8", errors="ignore"):
        raise DataError(path, number, None, "not UTF-8 text; is this the right file?")
      rows.append((number, parse_object(tail_text, path, number)))
    elif resume:
      logging.warning("%s:%d: dropping a torn last line (%d bytes); its work is redone",
                      path, number, len(tail))
      size -= len(tail)
    else:
      raise DataError(path, number, None,
                      "torn last line (not a whole JSON object and no trailing newline: "
                      "was the writer killed?); only a resumed job drops it")
  return rows, size


def _loads(text: str) -> Any:
  try:
    return json.loads(text)
  except json.JSONDecodeError:
    return None


def _parses(text: str) -> bool:
  try:
    json.loads(text)
  except json.JSONDecodeError:
    return False
  return True


def iter_rows(path: PathLike, *, resume: bool = False,
              missing_ok: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
  """Yields `(line number, row)` for each non-blank line of a JSONL file.

  The whole file is checked before the first row is yielded, so a caller
  never acts on part of a file that turns out to be malformed.

  Args:
    path: the file.
    resume: apply the resume rule to an unfinished last line (drop it).
    missing_ok: a missing file has no rows (else it is a DataError).

  Raises:
    DataError: missing or unreadable file, invalid JSON or UTF-8, a line that
      is not a JSON object, a torn last line when not resuming.
  """
  path = pathlib.Path(path)
  if missing_ok and not path.exists():
    return
  rows, _ = _parse(path, resume)
  yield from rows


def read_rows(path: PathLike, *, resume: bool = False,
              missing_ok: bool = False) -> list[dict[str, Any]]:
  """All rows of a JSONL file (see `iter_rows`)."""
  return [row for _, row in iter_rows(path, resume=resume, missing_ok=missing_ok)]


def read_resumable(path: PathLike) -> list[dict[str, Any]]:
  """The rows a resumed job has already written to `path` ([] if none yet)."""
  return read_rows(path, resume=True, missing_ok=True)


def dumps(row: Mapping[str, Any]) -> str:
  """One JSONL line (with its newline); NaN and infinities are refused."""
  return json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"


def write_rows(path: PathLike, rows: Iterable[Mapping[str, Any]]) -> int:
  """Replaces `path` atomically with `rows`; returns how many were written."""
  lines = [dumps(row) for row in rows]
  atomic.write_text(path, "".join(lines))
  return len(lines)


class Appender:
  """Appends rows durably to a JSONL file that a resumed job keeps extending.

  Opening it applies the resume rule: the whole file is validated (a
  malformed line before the end raises DataError and changes nothing), then a
  torn last line is cut off so that new rows never merge with it. Each
  `append` writes whole lines, flushes and fsyncs every `sync_every` rows.
  Thread-safe.

    with jsonl.Appender(path) as out:
      out.append({"id": 1, ...})
  """

  def __init__(self, path: PathLike, sync_every: int = 1):
    if sync_every < 1:
      raise ValueError(f"sync_every must be >= 1, got {sync_every}")
    self.path = pathlib.Path(path)
    self.sync_every = sync_every
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self.existing_rows = 0
    self.repaired_bytes = 0
    if self.path.exists():
      self._repair()
    self._file: Optional[Any] = open(self.path, "ab")
    self._lock = threading.Lock()
    self._unsynced = 0

  def _repair(self) -> None:
    rows, keep = _parse(self.path, resume=True)
    self.existing_rows = len(rows)
    with open(self.path, "rb+") as f:
      size = f.seek(0, os.SEEK_END)
      if keep < size:  # a torn last line
        self.repaired_bytes = size - keep
        f.truncate(keep)
      elif keep:
        f.seek(keep - 1)
        if f.read(1) == b"\n":
          return
        f.write(b"\n")  # a whole row that only lacks its newline
      else:
        return
      f.flush()
      os.fsync(f.fileno())

  def append(self, row: Mapping[str, Any]) -> None:
    """Appends one row."""
    self.append_many([row])

  def append_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
    """Appends several rows (one write; fsync'd per `sync_every`)."""
    rows = list(rows)
    data = "".join(dumps(row) for row in rows).encode("utf-8")
    with self._lock:
      if self._file is None:
        raise ValueError(f"{self.path}: appender is closed")
      self._file.write(data)
      self._unsynced += len(rows)
      if self._unsynced >= self.sync_every:
        self._sync()

  def _sync(self) -> None:
    self._file.flush()
    os.fsync(self._file.fileno())
    self._unsynced = 0

  def flush(self) -> None:
    """Flushes and fsyncs what was appended."""
    with self._lock:
      if self._file is not None:
        self._sync()

  def close(self) -> None:
    with self._lock:
      if self._file is not None:
        self._sync()
        self._file.close()
        self._file = None

  def __enter__(self) -> "Appender":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
