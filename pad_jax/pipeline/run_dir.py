"""Run directories: one sub-directory per stage, completion markers, atomic writes.

A stage writes everything into `RUN_DIR/<stage>/` and, as its very last act,
the completion marker `RUN_DIR/<stage>/DONE.json` (written to a temporary file,
fsync'd and renamed, so a marker either exists whole or not at all). A stage
whose marker exists is complete and is skipped; a stage directory without a
marker is an interrupted stage and is run again: it resumes its own partial
work (teacher cache, t5x checkpoints, decoded questions) when it was started
with the same config and the same upstream runs (`STARTED.json`), and starts
over in an emptied directory otherwise.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import time
import uuid
from typing import Any, Mapping, Optional

from pad_jax import atomic

MARKER = "DONE.json"
STARTED = "STARTED.json"


class RunDirError(RuntimeError):
  """A run directory cannot be used as asked; the message says why."""


def read_json(path: os.PathLike | str) -> Any:
  with open(path) as f:
    return json.load(f)


class RunDir:
  """The directory of one pipeline run."""

  def __init__(self, root: os.PathLike | str):
    self.root = pathlib.Path(root).absolute()

  def stage_dir(self, stage: str) -> pathlib.Path:
    return self.root / stage

  def marker_path(self, stage: str) -> pathlib.Path:
    return self.stage_dir(stage) / MARKER

  def marker(self, stage: str) -> Optional[dict[str, Any]]:
    """The completion marker of `stage`, or None when it has not finished."""
    path = self.marker_path(stage)
    if not path.exists():
      return None
    return read_json(path)

  def is_done(self, stage: str) -> bool:
    return self.marker_path(stage).exists()

  def started(self, stage: str) -> Optional[dict[str, Any]]:
    path = self.stage_dir(stage) / STARTED
    return read_json(path) if path.exists() else None

  def start(self, stage: str, *, config: Mapping[str, Any], upstream: Mapping[str, Any]) -> None:
    """Prepares the directory of a stage about to run.

    Partial outputs of an interrupted start with the same config and the
    same upstream runs are kept (the stage resumes from them); otherwise the
    directory is emptied first.
    """
    record = {"config": dict(config), "upstream": dict(upstream)}
    previous = self.started(stage)
    if previous is not None and previous != json.loads(json.dumps(record, default=list)):
      self.reset(stage)
    elif previous is None and self.stage_dir(stage).exists() and not self.stage_dir(stage).is_symlink():
      self.reset(stage)  # outputs of unknown origin
    self.stage_dir(stage).mkdir(parents=True, exist_ok=True)
    atomic.write_json(self.stage_dir(stage) / STARTED, record)

  def mark_done(self, stage: str, *, wall_s: float, config: Mapping[str, Any],
                summary: Mapping[str, Any],
                upstream: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    marker = {"stage": stage, "id": uuid.uuid4().hex, "wall_s": round(wall_s, 3),
              "config": dict(config), "upstream": dict(upstream or {}),
              "summary": dict(summary),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic.write_json(self.marker_path(stage), marker)
    return marker

  def invalidate(self, stage: str) -> None:
    """Removes the marker so that `stage` runs again (its outputs are kept)."""
    try:
      os.unlink(self.marker_path(stage))
    except FileNotFoundError:
      pass

  def reset(self, stage: str) -> None:
    """Removes everything `stage` wrote, so that it runs again from scratch."""
    path = self.stage_dir(stage)
    if path.is_symlink():
      raise RunDirError(f"{path} is a link to a shared stage; redo it where it lives "
                         f"({os.path.realpath(path)})")
    if path.exists():
      shutil.rmtree(path)
