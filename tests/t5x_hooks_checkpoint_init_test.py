"""pad_jax.t5x_hooks.checkpoint_init: which checkpoint a run restores, and
the data iterator that skips the initial checkpoint.

The shape check against a real trained checkpoint is in tests/train_test.py.
"""

import numpy as np
import pytest
import tensorflow as tf

from pad_jax.t5x_hooks import checkpoint_init


def test_checkpoint_to_restore(tmp_path):
  run, init = tmp_path / "run", tmp_path / "init"
  for step in (0, 12, 4):
    (init / f"checkpoint_{step}").mkdir(parents=True)
  assert checkpoint_init.checkpoint_to_restore(None, None) is None
  # A fresh run: the initial checkpoint (a directory: its latest step).
  assert checkpoint_init.checkpoint_to_restore(str(run), str(init)) == str(
      init / "checkpoint_12")
  specific = str(init / "checkpoint_4")
  assert checkpoint_init.checkpoint_to_restore(None, specific) == specific
  # A resumed run: its own latest checkpoint wins.
  (run / "checkpoint_2").mkdir(parents=True)
  assert checkpoint_init.checkpoint_to_restore(str(run), str(init)) == str(
      run / "checkpoint_2")
  with pytest.raises(ValueError, match="does not exist"):
    checkpoint_init.checkpoint_to_restore(None, str(init / "checkpoint_999"))


def test_mismatching_shapes_are_named(tmp_path, monkeypatch):
  stored = {"encoder/kernel": (4, 8), "decoder/kernel": (8, 4)}
  monkeypatch.setattr(checkpoint_init, "checkpoint_param_shapes",
                      lambda _: dict(stored))

  class Shapes:
    params = {"encoder": {"kernel": np.zeros((4, 8))},
              "decoder": {"kernel": np.zeros((8, 2))}}

  with pytest.raises(ValueError, match=r"'decoder/kernel' has shape \(8, 4\) "
                     r"in the checkpoint but \(8, 2\) in the model"):
    checkpoint_init.check_checkpoint_matches_model(str(tmp_path), Shapes())


def test_iterator_skips_only_the_initial_checkpoint(tmp_path):
  dataset = tf.data.Dataset.range(5).map(lambda i: {"i": i})
  init = tmp_path / "init" / "checkpoint_0"
  iterator = checkpoint_init.get_train_iterator(
      dataset_fn=lambda: dataset, initial_checkpoint_path=str(init))
  assert isinstance(iterator, checkpoint_init.InitAwareTfDatasetIterator)
  assert int(next(iterator)["i"]) == 0
  saved = tmp_path / "run" / "checkpoint_1" / "train_ds"
  saved.parent.mkdir(parents=True)
  iterator.save(saved)
  next(iterator)
  iterator.restore(saved)          # the run's own checkpoint: restored
  assert int(next(iterator)["i"]) == 1
  iterator.restore(init / "dataset" / "train_ds")  # the initial one: skipped
  assert int(next(iterator)["i"]) == 2
  # Anything but a tf.data.Dataset passes through.
  assert checkpoint_init.get_train_iterator(dataset_fn=lambda: [1]) == [1]
