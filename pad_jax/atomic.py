"""Atomic file replacement (a leaf module): readers see the old file or the new one.

The one temp-file-and-rename writer of the package: every whole-file write
(reports, manifests, run-directory markers, datasets) goes through
`write_text` / `write_json`; appending JSONL goes through `pad_jax.jsonl`.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any


def write_text(path: os.PathLike | str, text: str) -> None:
  """Writes `text` to `path` via a fsync'd temporary file and a rename.

  The directory entry is fsync'd too, so the rename survives a crash. A failure
  leaves the previous file (if any) untouched and no temporary file behind.
  A path with a scheme (`gs://...`, e.g. a t5x MODEL_DIR) is written through
  `tf.io.gfile` the same way (temporary file, then rename).
  """
  if "://" in os.fspath(path):
    _write_text_gfile(os.fspath(path), text)
    return
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


def _write_text_gfile(path: str, text: str) -> None:
  # Deferred on purpose: only remote paths need TensorFlow, which is heavy.
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  gfile = tf.io.gfile
  gfile.makedirs(path.rsplit("/", 1)[0])
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with gfile.GFile(tmp, "w") as f:
      f.write(text)
    gfile.rename(tmp, path, overwrite=True)
  except BaseException:
    if gfile.exists(tmp):
      gfile.remove(tmp)
    raise


def write_json(path: os.PathLike | str, obj: Any, indent: int = 2) -> None:
  """Writes `obj` as JSON (sets, tuples, paths and numpy scalars allowed) atomically."""
  write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
  if isinstance(obj, (set, frozenset, tuple)):
    return list(obj)
  if isinstance(obj, pathlib.PurePath):
    return str(obj)
  if hasattr(obj, "item"):  # numpy scalars
    return obj.item()
  raise TypeError(f"not JSON serializable: {type(obj).__name__}")


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
