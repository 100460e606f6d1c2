"""The error types for bad input data and bad configs (a leaf module).

Every reader in `pad_jax.data` raises `DataError` for a missing file, bad JSON,
a missing or ill-typed field, or a file of the wrong shape. Its message names
the file, the 1-based line and the field, so a user can open the file at the
right place:

  /data/gsm8k/test.jsonl:17: field 'answer': no '#### N' final answer line
"""

from __future__ import annotations

import os
from typing import Optional, Union

PathLike = Union[str, os.PathLike]


class DataError(ValueError):
  """Malformed or missing input data.

  Attributes:
    path: the file (or directory) at fault, as a string.
    line: the 1-based line number, or None when the whole file is at fault.
    field: the JSON field at fault, or None.
    message: what is wrong, and where possible how to fix it.
  """

  def __init__(self,
               path: PathLike,
               line: Optional[int],
               field: Optional[str],
               message: str):
    self.path = os.fspath(path)
    self.line = line
    self.field = field
    self.message = message
    super().__init__(self.path, line, field, message)

  def __str__(self) -> str:
    location = self.path if self.line is None else f"{self.path}:{self.line}"
    if self.field is None:
      return f"{location}: {self.message}"
    return f"{location}: field '{self.field}': {self.message}"

  def __reduce__(self):
    # Keep the four-argument constructor working across pickling (e.g. when
    # raised inside a multiprocessing worker).
    return (type(self), (self.path, self.line, self.field, self.message))


class ConfigError(ValueError):
  """A setting that cannot work; the message starts with the field, e.g.

    ScoreConfig.answer_format: must be one of ('program', 'text'), got 'txt'

  Commands print it as one line and exit with status 2, before any work.
  """
