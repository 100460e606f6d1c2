"""Atomic file replacement (a leaf module): readers see the old file or the new one."""

from __future__ import annotations

import os
import pathlib
import tempfile


def write_text(path: os.PathLike | str, text: str) -> None:
  """Writes `text` to `path` via a fsync'd temporary file and a rename.

  The directory entry is fsync'd too, so the rename survives a crash. A failure
  leaves the previous file (if any) untouched and no temporary file behind.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  _fsync_dir(path.parent)


def _fsync_dir(path: pathlib.Path) -> None:
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)
