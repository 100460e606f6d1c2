"""The gin-facing names of PaD's t5x hooks (implemented in `pad_jax.t5x_hooks`).

The run gin files (`gin_configs/runs/pad_finetune.gin`, `pad_eval.gin`, ...)
and the `config.gin` that t5x saves in every MODEL_DIR refer to the hooks as
`train_hooks.<name>` (gin's dynamic registration names a configurable after
the module it was imported from), so this module keeps those names. New code
imports the `pad_jax.t5x_hooks` modules directly:

* `task_lookup`: `checked_task_name`, `program_task`,
  `verify_task_and_vocabulary`;
* `schedules`: `steps_for_epochs`, `learning_rate_schedule`;
* `datasets`: `get_train_dataset`, `get_training_eval_datasets_checked`,
  `check_truncation`;
* `checkpoint_init`: `CheckedTrainStateInitializer`;
* `early_stopping`: `EarlyStopping`, `tensorboard_metric_name`,
  `read_early_stopping`.
"""

from __future__ import annotations

from pad_jax.t5x_hooks.checkpoint_init import check_checkpoint_matches_model
from pad_jax.t5x_hooks.checkpoint_init import CheckedTrainStateInitializer
from pad_jax.t5x_hooks.datasets import check_truncation
from pad_jax.t5x_hooks.datasets import count_truncated
from pad_jax.t5x_hooks.datasets import get_train_dataset
from pad_jax.t5x_hooks.datasets import get_training_eval_datasets_checked
from pad_jax.t5x_hooks.datasets import tokenize_split
from pad_jax.t5x_hooks.datasets import TokenizedSplit
from pad_jax.t5x_hooks.datasets import TRUNCATION_REPORT_PREFIX
from pad_jax.t5x_hooks.datasets import TruncationReport
from pad_jax.t5x_hooks.early_stopping import EARLY_STOPPING_FILE
from pad_jax.t5x_hooks.early_stopping import EarlyStopping
from pad_jax.t5x_hooks.early_stopping import read_early_stopping
from pad_jax.t5x_hooks.early_stopping import tensorboard_metric_name
from pad_jax.t5x_hooks.schedules import learning_rate_schedule
from pad_jax.t5x_hooks.schedules import steps_for_epochs
from pad_jax.t5x_hooks.task_lookup import checked_task_name
from pad_jax.t5x_hooks.task_lookup import count_examples
from pad_jax.t5x_hooks.task_lookup import get_task
from pad_jax.t5x_hooks.task_lookup import program_task
from pad_jax.t5x_hooks.task_lookup import task_name
from pad_jax.t5x_hooks.task_lookup import verify_task_and_vocabulary

__all__ = [
    "CheckedTrainStateInitializer",
    "EARLY_STOPPING_FILE",
    "EarlyStopping",
    "TRUNCATION_REPORT_PREFIX",
    "TokenizedSplit",
    "TruncationReport",
    "check_checkpoint_matches_model",
    "check_truncation",
    "checked_task_name",
    "count_examples",
    "count_truncated",
    "get_task",
    "get_train_dataset",
    "get_training_eval_datasets_checked",
    "learning_rate_schedule",
    "program_task",
    "read_early_stopping",
    "steps_for_epochs",
    "task_name",
    "tensorboard_metric_name",
    "tokenize_split",
    "verify_task_and_vocabulary",
]
