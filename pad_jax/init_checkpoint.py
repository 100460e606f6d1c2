"""Fine-tuning from an initial checkpoint without data-iterator state.

`runs/pad_finetune.gin` saves the training data iterator with every
checkpoint (`SaveCheckpointConfig.save_dataset`) so that a killed run resumes
at the same position of the data stream. t5x's Orbax checkpoint manager then
also reads the iterator from the initial checkpoint of a fine-tuning run
(`INITIAL_CHECKPOINT_PATH`) and fails with `NotFoundError:
.../checkpoint_0/dataset/train_ds-000-of-001` on a checkpoint written by
`python -m pad_jax.convert_hf` (parameters only).

`get_train_dataset` wraps the run's `get_dataset_fn` so that its iterator
(`InitAwareTfDatasetIterator`) ignores an iterator state read from inside
the initial checkpoint: a fine-tuning run starts its data stream from the
beginning, as one from scratch, while a run resumed from its own checkpoints
in `MODEL_DIR` restores the iterator exactly as t5x's `TfDatasetIterator`.
(t5x requires one checkpoint-manager class for saving, resuming and the
initial restore, and builds the resume config in code, so the manager cannot
be specialised for the initial checkpoint alone; the iterator can.)
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from absl import logging
import clu.data.dataset_iterator
import tensorflow as tf


def _is_under(path: str, directory: str) -> bool:
  path = os.path.abspath(os.fspath(path))
  directory = os.path.abspath(os.fspath(directory)).rstrip(os.sep)
  return path == directory or path.startswith(directory + os.sep)


class InitAwareTfDatasetIterator(
    clu.data.dataset_iterator.TfDatasetIterator):
  """A checkpointed `TfDatasetIterator` that skips the initial checkpoint."""

  def __init__(self, dataset: tf.data.Dataset, *,
               initial_checkpoint_path: Optional[str]):
    super().__init__(dataset, checkpoint=True)
    self._initial_checkpoint_path = initial_checkpoint_path

  def restore(self, filename: Any):
    """Restores the iterator, except from inside the initial checkpoint."""
    if self._initial_checkpoint_path and _is_under(
        filename, self._initial_checkpoint_path):
      logging.warning(
          "Not restoring the data iterator from the initial checkpoint %s "
          "(INITIAL_CHECKPOINT_PATH): the training data starts from the "
          "beginning.", self._initial_checkpoint_path)
      return
    super().restore(filename)


def get_train_dataset(
    *args: Any,
    dataset_fn: Callable[..., Any],
    initial_checkpoint_path: Optional[str] = None,
    **kwargs: Any,
) -> Any:
  """`get_dataset_fn` for `t5x.train` that wraps another one.

  Args:
    *args: passed to `dataset_fn` (t5x's `get_dataset_fn` arguments).
    dataset_fn: the wrapped `get_dataset_fn` (e.g.
      `train_hooks.get_train_dataset`).
    initial_checkpoint_path: the run's `INITIAL_CHECKPOINT_PATH` (None: no
      initial checkpoint; the iterator behaves as t5x's own).
    **kwargs: passed to `dataset_fn`.

  Returns:
    `dataset_fn`'s result; a `tf.data.Dataset` becomes an
    `InitAwareTfDatasetIterator` (t5x would wrap it in a checkpointed
    `TfDatasetIterator`).
  """
  dataset = dataset_fn(*args, **kwargs)
  if isinstance(dataset, tf.data.Dataset):
    return InitAwareTfDatasetIterator(
        dataset, initial_checkpoint_path=initial_checkpoint_path)
  return dataset
