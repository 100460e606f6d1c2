"""Fine-tuning from a checkpoint without data-iterator state.

`runs/pad_finetune.gin` saves the training data iterator with every
checkpoint (`SaveCheckpointConfig.save_dataset`) so that a killed run resumes
at the same position of the data stream. t5x's Orbax checkpoint manager then
also reads the iterator from *every* checkpoint it restores, including the
initial one of a fine-tuning run (`INITIAL_CHECKPOINT_PATH`), and fails with
`NotFoundError: .../checkpoint_0/dataset/train_ds-000-of-001` on a checkpoint
written by `python -m pad_jax.convert_hf` (parameters only) or by another
run's task.

`OrbaxCheckpointManager` restores such a checkpoint without the iterator
(the data stream starts from its beginning, as for a run from scratch); a
checkpoint that has the iterator (resuming from `MODEL_DIR`) is restored
exactly as by t5x's `OrbaxCheckpointManagerInterface`. t5x requires the
same class in `SaveCheckpointConfig.checkpoint_manager_cls` and
`RestoreCheckpointConfig.checkpoint_manager_cls`; the gin file binds both.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence

from absl import logging
from t5x import checkpoints
from t5x import train_state as train_state_lib

# The item name of the data-iterator state inside a t5x Orbax checkpoint.
DATASET_ITEM = "dataset"


# t5x's file-name prefix of a data-iterator state (`train_ds-000-of-001`).
DATASET_FILE_PREFIX = "train_ds"


def has_dataset_state(checkpoint_dir: str) -> bool:
  """Whether a t5x checkpoint directory holds a data-iterator state.

  A checkpoint saved without an iterator (`pad_jax.convert_hf`) still has an
  empty `dataset/` item directory (only `commit_success.txt`); the state is
  `dataset/[process_i-of-n/]train_ds-*` files.

  Args:
    checkpoint_dir: a t5x checkpoint directory (`.../checkpoint_N`).

  Returns:
    True when some `train_ds-*` file exists below `dataset/`.
  """
  root = os.path.join(checkpoint_dir, DATASET_ITEM)
  for _, _, files in os.walk(root):
    if any(f.startswith(DATASET_FILE_PREFIX) for f in files):
      return True
  return False


class OrbaxCheckpointManager(checkpoints.OrbaxCheckpointManagerInterface):
  """t5x's Orbax checkpoint manager; also restores params-only checkpoints."""

  def restore(
      self,
      step: Optional[int] = None,
      path: Optional[str] = None,
      fallback_state: Optional[Mapping[str, Any]] = None,
      state_transformation_fns: Sequence[Any] = (),
      lazy_parameters: Optional[bool] = False,
  ) -> train_state_lib.TrainState:
    """As the parent; skips the data iterator where the checkpoint has none."""
    kwargs = dict(step=step, path=path, fallback_state=fallback_state,
                  state_transformation_fns=state_transformation_fns,
                  lazy_parameters=lazy_parameters)
    if not self._should_write_dataset_ckpt:
      return super().restore(**kwargs)
    if path is not None:
      ckpt_dir = os.fspath(path)
    elif step is not None:
      ckpt_dir = checkpoints.get_checkpoint_dir(os.fspath(self.directory), step)
    else:
      return super().restore(**kwargs)
    if has_dataset_state(ckpt_dir):
      return super().restore(**kwargs)
    logging.warning(
        "%s has no data-iterator state (e.g. a converted, params-only "
        "checkpoint): restoring the train state only; the training data "
        "starts from the beginning.", ckpt_dir)
    self._should_write_dataset_ckpt = False
    try:
      return super().restore(**kwargs)
    finally:
      self._should_write_dataset_ckpt = True
