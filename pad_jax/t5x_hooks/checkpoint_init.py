"""Starting a t5x run from a checkpoint: shape check and data iterator.

* `CheckedTrainStateInitializer` (t5x's `train_state_initializer_cls`)
  compares the parameter shapes stored in the checkpoint that is about to be
  restored with the model's before t5x restores it, and names the first
  mismatching parameter (a checkpoint from another model config otherwise
  fails deep inside Orbax).
* `get_train_iterator` (t5x's `get_dataset_fn`, wrapping another one): the
  fine-tuning run's data iterator is not restored from its initial
  checkpoint.

Why the iterator: `runs/pad_finetune.gin` saves the training data iterator
with every checkpoint (`SaveCheckpointConfig.save_dataset`) so that a killed
run resumes at the same position of the data stream. t5x's Orbax checkpoint
manager then also reads the iterator from the initial checkpoint of a
fine-tuning run (`INITIAL_CHECKPOINT_PATH`) and fails with `NotFoundError:
.../checkpoint_0/dataset/train_ds-000-of-001` on a checkpoint written by
`python -m pad_jax.convert_hf` (parameters only). `InitAwareTfDatasetIterator`
ignores an iterator state read from inside the initial checkpoint: a
fine-tuning run starts its data stream from the beginning, as one from
scratch, while a run resumed from its own checkpoints in `MODEL_DIR` restores
the iterator exactly as t5x's `TfDatasetIterator`. (t5x requires one
checkpoint-manager class for saving, resuming and the initial restore, and
builds the resume config in code, so the manager cannot be specialised for
the initial checkpoint alone; the iterator can.)
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional

from absl import logging
import clu.data.dataset_iterator
from etils import epath
import jax
import orbax.checkpoint as ocp
from t5x import checkpoints as t5x_checkpoints
from t5x import utils
import tensorflow as tf

from pad_jax import checkpoints

gfile = tf.io.gfile


# ---------------------------------------------------------------------------
# The checkpoint a run restores, and its shapes against the model's.
# ---------------------------------------------------------------------------


def _flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """`{"a/b/c": shape}` for every leaf of `tree` that has a shape."""
  shapes = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: hasattr(x, "shape")
  )[0]:
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    if hasattr(leaf, "shape") and leaf.shape is not None:
      shapes[name] = tuple(int(d) for d in leaf.shape)
  return shapes


def checkpoint_param_shapes(ckpt_dir: str) -> dict[str, tuple[int, ...]]:
  """Shapes of the `target` (model parameter) arrays stored in a checkpoint.

  Supports t5x's Orbax layout (`checkpoint_N/state`) and legacy t5x
  checkpoints (a `checkpoint` msgpack file).
  """
  state_dir = os.path.join(ckpt_dir, "state")
  if gfile.isdir(state_dir):
    meta = ocp.PyTreeCheckpointHandler().metadata(epath.Path(state_dir))
    tree = getattr(meta, "tree", meta)
  else:
    tree = t5x_checkpoints.load_t5x_checkpoint(ckpt_dir, lazy_parameters=True)
  target = tree.get("target", {}) if isinstance(tree, Mapping) else {}
  return _flat_shapes(target)


def model_param_shapes(train_state_shape: Any) -> dict[str, tuple[int, ...]]:
  """Parameter shapes of `TrainStateInitializer.global_train_state_shape`."""
  return _flat_shapes(train_state_shape.params)


def check_checkpoint_matches_model(
    ckpt_dir: str, train_state_shape: Any
) -> None:
  """Raises a one-line error naming the first parameter that does not fit.

  Args:
    ckpt_dir: a t5x checkpoint directory (`.../checkpoint_N`).
    train_state_shape: `TrainStateInitializer.global_train_state_shape`.

  Raises:
    ValueError: a parameter is missing from the checkpoint, unknown to the
      model, or has another shape.
  """
  model = model_param_shapes(train_state_shape)
  try:
    stored = checkpoint_param_shapes(ckpt_dir)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("Could not read parameter shapes of %s: %s", ckpt_dir, e)
    return
  if not stored:
    return
  hint = (
      "the checkpoint was made for another model config: use the model gin "
      "file that matches it (e.g. models/codet5_small.gin for a converted "
      "codet5-small) or a fresh MODEL_DIR."
  )
  for name, shape in sorted(model.items()):
    if name not in stored:
      raise ValueError(
          f"{ckpt_dir}: parameter {name!r} of the model is missing from the "
          f"checkpoint; {hint}"
      )
    if stored[name] != shape:
      raise ValueError(
          f"{ckpt_dir}: parameter {name!r} has shape {stored[name]} in the "
          f"checkpoint but {shape} in the model; {hint}"
      )
  extra = sorted(set(stored) - set(model))
  if extra:
    raise ValueError(
        f"{ckpt_dir}: checkpoint parameter {extra[0]!r} (and "
        f"{len(extra) - 1} more) does not exist in the model; {hint}"
    )


def checkpoint_to_restore(
    model_dir: Optional[str], checkpoint_path: Optional[str]
) -> Optional[str]:
  """The checkpoint t5x will restore: latest in model_dir, else the path.

  Args:
    model_dir: the run's MODEL_DIR (a resume restores its latest checkpoint).
    checkpoint_path: INITIAL_CHECKPOINT_PATH / CHECKPOINT_PATH: a checkpoint,
      or a directory of `checkpoint_<step>` directories (its latest).

  Returns:
    The checkpoint directory, or None when there is nothing to restore.

  Raises:
    ValueError: `checkpoint_path` does not exist.
  """
  if model_dir:
    latest = checkpoints.latest_checkpoint(model_dir)
    if latest:
      return latest
  if not checkpoint_path:
    return None
  if not gfile.exists(checkpoint_path):
    raise ValueError(
        f"checkpoint path {checkpoint_path!r} does not exist "
        "(INITIAL_CHECKPOINT_PATH / CHECKPOINT_PATH)"
    )
  if checkpoints.checkpoint_step(checkpoint_path) is None:
    return checkpoints.latest_checkpoint(checkpoint_path) or checkpoint_path
  return checkpoint_path


class CheckedTrainStateInitializer(utils.TrainStateInitializer):
  """`TrainStateInitializer` that checks the checkpoint to be restored.

  t5x restores parameters after constructing the initializer; a checkpoint
  from another model config then fails deep inside Orbax. This subclass
  compares shapes first and names the offending parameter.
  """

  def __init__(
      self,
      optimizer_def,
      init_fn,
      input_shapes,
      partitioner,
      input_types=None,
      *,
      model_dir: Optional[str] = None,
      checkpoint_path: Optional[str] = None,
  ):
    super().__init__(
        optimizer_def=optimizer_def, init_fn=init_fn,
        input_shapes=input_shapes, partitioner=partitioner,
        input_types=input_types,
    )
    ckpt = checkpoint_to_restore(model_dir, checkpoint_path)
    if ckpt:
      check_checkpoint_matches_model(ckpt, self.global_train_state_shape)


# ---------------------------------------------------------------------------
# The data iterator of a run that starts from an initial checkpoint.
# ---------------------------------------------------------------------------


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


def get_train_iterator(
    *args: Any,
    dataset_fn: Callable[..., Any],
    initial_checkpoint_path: Optional[str] = None,
    **kwargs: Any,
) -> Any:
  """`get_dataset_fn` for `t5x.train` that wraps another one.

  The run files know it as `init_checkpoint.get_train_dataset`.

  Args:
    *args: passed to `dataset_fn` (t5x's `get_dataset_fn` arguments).
    dataset_fn: the wrapped `get_dataset_fn` (e.g.
      `datasets.get_train_dataset`).
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
