"""The gin-facing name of the initial-checkpoint-aware training iterator.

`gin_configs/runs/pad_finetune.gin` and the `config.gin` that t5x saves in
every MODEL_DIR refer to it as `init_checkpoint.get_train_dataset` (gin's
dynamic registration names a configurable after the module it was imported
from), so this module keeps that name. The implementation, and why the data
iterator is not restored from an initial checkpoint, is in
`pad_jax.t5x_hooks.checkpoint_init`.
"""

from __future__ import annotations

from pad_jax.t5x_hooks.checkpoint_init import get_train_iterator as get_train_dataset
from pad_jax.t5x_hooks.checkpoint_init import InitAwareTfDatasetIterator

__all__ = ["InitAwareTfDatasetIterator", "get_train_dataset"]
