"""Finding t5x checkpoints in a model directory (a leaf module).

The one place that knows how t5x names its checkpoints: a model directory
(`MODEL_DIR`) holds one `checkpoint_<step>` directory per saved step. Orbax
writes a checkpoint under a temporary name (`checkpoint_<step>.orbax-
checkpoint-tmp-<n>`, or `.tmp`) and renames it when it is complete, so only
the exact name `checkpoint_<step>` counts.

Local paths are read with the standard library. Paths with a scheme
(`gs://...`) go through `tf.io.gfile`, imported only then: the pipeline
process and `python -m pad_jax.infer --help` stay free of TensorFlow.
"""

from __future__ import annotations

import os
import re
from typing import Optional, Union

PathLike = Union[str, os.PathLike]

CHECKPOINT_PREFIX = "checkpoint_"
_CHECKPOINT_RE = re.compile(r"checkpoint_(\d+)")


def _is_remote(path: str) -> bool:
  return "://" in path


def _gfile():
  # Deferred on purpose: TensorFlow is heavy and only remote paths need it.
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf.io.gfile


def _basename(path: str) -> str:
  return path.rstrip("/").rsplit("/", 1)[-1] if _is_remote(path) else (
      os.path.basename(os.path.normpath(path)))


def _isdir(path: str) -> bool:
  return _gfile().isdir(path) if _is_remote(path) else os.path.isdir(path)


def _listdir(path: str) -> list[str]:
  if _is_remote(path):
    return [name.rstrip("/") for name in _gfile().listdir(path)]
  return os.listdir(path)


def join(model_dir: PathLike, name: str) -> str:
  """`model_dir/name`, keeping a `gs://` scheme intact."""
  model_dir = os.fspath(model_dir)
  if _is_remote(model_dir):
    return model_dir.rstrip("/") + "/" + name
  return os.path.join(model_dir, name)


def checkpoint_step(path: PathLike) -> Optional[int]:
  """The step of a `checkpoint_<step>` path, or None for any other name."""
  match = _CHECKPOINT_RE.fullmatch(_basename(os.fspath(path)))
  return int(match.group(1)) if match else None


def checkpoint_dir(model_dir: PathLike, step: int) -> str:
  """The path of step `step`'s checkpoint in `model_dir`."""
  return join(model_dir, f"{CHECKPOINT_PREFIX}{int(step)}")


def checkpoint_steps(model_dir: PathLike) -> list[int]:
  """The steps of the finished checkpoints in `model_dir`, ascending.

  Only directories named exactly `checkpoint_<step>` count: Orbax's temporary
  directories, `.tmp` names and plain files are ignored. A missing
  `model_dir` has no checkpoints.
  """
  model_dir = os.fspath(model_dir)
  if not _isdir(model_dir):
    return []
  steps = []
  for name in _listdir(model_dir):
    match = _CHECKPOINT_RE.fullmatch(name)
    if match and _isdir(join(model_dir, name)):
      steps.append(int(match.group(1)))
  return sorted(steps)


def latest_checkpoint(model_dir: PathLike) -> Optional[str]:
  """The `checkpoint_<step>` directory with the largest step, or None."""
  steps = checkpoint_steps(model_dir)
  return checkpoint_dir(model_dir, steps[-1]) if steps else None


def resolve_checkpoint(path: PathLike) -> str:
  """A checkpoint directory given as itself or as the model dir holding it.

  Args:
    path: a `checkpoint_<step>` directory, or a model directory (its latest
      checkpoint is returned).

  Returns:
    The checkpoint directory.

  Raises:
    FileNotFoundError: `path` is not a directory, or a model directory
      without any `checkpoint_<step>` directory.
  """
  path = os.fspath(path)
  if not _isdir(path):
    raise FileNotFoundError(f"{path}: checkpoint directory not found")
  if checkpoint_step(path) is not None:
    return path
  latest = latest_checkpoint(path)
  if latest is None:
    raise FileNotFoundError(
        f"{path}: no checkpoint_<step> directory in it (expected a t5x "
        "checkpoint_<step> directory or the MODEL_DIR that holds them)")
  return latest
