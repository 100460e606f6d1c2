"""The durable completion cache: `OUT_DIR/completions.jsonl`.

One JSON object per finished completion:

  {"key": "3f2a...", "id": "gsm8k-train-00042", "sample": 3,
   "prompt_variant": 5, "question": "...", "answer": 18.0,
   "text": "<raw completion>", "model": "...", "teacher": "...",
   "finish_reason": "stop", "usage": {"prompt_tokens": 812,
   "completion_tokens": 143}}

Each row is written whole, then flushed and fsync-ed, before the job counts it
as done, so after `kill -9` at any moment a re-run finds every finished
completion (no loss) and skips it (no duplicate: rows are keyed by `key`). A
torn last line (the write in flight when the process died) is cut off when
the cache is opened (the resume rule of `pad_jax.jsonl`). `key` hashes
everything that determines a completion (model, the full prompt, sampling
parameters, sample index), so changing the model or the prompt makes new
work rather than reusing old text.

Requests that failed for good go to `failed.jsonl` (same layout, with
`error` instead of `text`); they are retried by the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any, Optional, Union

from pad_jax import jsonl
from pad_jax.errors import DataError

COMPLETIONS_FILE = "completions.jsonl"
FAILED_FILE = "failed.jsonl"

PathLike = Union[str, os.PathLike]


def request_key(model: str, messages: list[dict[str, str]], params: dict[str, Any],
                question_id: str, sample: int) -> str:
  """The cache key of one sample: sha256 over everything that determines it."""
  payload = {"model": model, "messages": messages, "params": params, "id": question_id,
             "sample": sample}
  return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


class CompletionCache:
  """`completions.jsonl` + `failed.jsonl` of one output directory."""

  def __init__(self, out_dir: PathLike):
    self.out_dir = pathlib.Path(out_dir)
    self.completions_path = self.out_dir / COMPLETIONS_FILE
    self.failed_path = self.out_dir / FAILED_FILE
    self.rows: dict[str, dict[str, Any]] = {}
    for number, row in jsonl.iter_rows(self.completions_path, resume=True, missing_ok=True):
      if "key" not in row:
        raise DataError(self.completions_path, number, "key", "missing field")
      self.rows.setdefault(row["key"], row)
    self._completions = jsonl.Appender(self.completions_path)
    self._failed = jsonl.Appender(self.failed_path)

  def __contains__(self, key: str) -> bool:
    return key in self.rows

  def __len__(self) -> int:
    return len(self.rows)

  def get(self, key: str) -> Optional[dict[str, Any]]:
    return self.rows.get(key)

  def add(self, row: dict[str, Any]) -> bool:
    """Appends a finished completion; False (nothing written) if already there."""
    if row["key"] in self.rows:
      return False
    self._completions.append(row)
    self.rows[row["key"]] = row
    return True

  def add_many(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Appends the rows not cached yet (one fsync); returns those rows."""
    new, keys = [], set()
    for row in rows:
      if row["key"] not in self.rows and row["key"] not in keys:
        keys.add(row["key"])
        new.append(row)
    if new:
      self._completions.append_many(new)
      for row in new:
        self.rows[row["key"]] = row
    return new

  def add_failure(self, row: dict[str, Any]) -> None:
    self._failed.append(row)

  def close(self) -> None:
    self._completions.close()
    self._failed.close()

  def __enter__(self) -> "CompletionCache":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def usage_totals(rows) -> dict[str, int]:
  """Sums `usage` over completion rows (a row of an `n` request carries its share)."""
  prompt = completion = 0
  for row in rows:
    usage = row.get("usage") or {}
    prompt += int(usage.get("prompt_tokens") or 0)
    completion += int(usage.get("completion_tokens") or 0)
  return {"prompt_tokens": prompt, "completion_tokens": completion,
          "total_tokens": prompt + completion}
