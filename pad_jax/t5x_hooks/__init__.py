"""Hooks that plug PaD's recipe into an unmodified `t5x.train` (and t5x models).

Every hook is a function or class that `t5x.train.train` / `t5x.eval.evaluate`
already accept as an argument; the run gin files wire them in (through the
gin-facing modules `pad_jax.train_hooks` and `pad_jax.init_checkpoint`, whose
names the gin files and saved `MODEL_DIR/config.gin` files use), so t5x's
code stays untouched. One module per concern:

* `task_lookup`: tasks by name with a readable error, `program_task` (a
  program-dataset JSONL registered from the command line), the task and
  vocabulary check.
* `schedules`: run length in epochs, the learning-rate schedule.
* `datasets`: the training split tokenized once and served from memory, and
  the truncation count (report + failure) that precedes every dataset.
* `checkpoint_init`: the checkpoint-vs-model shape check before t5x restores,
  and the data iterator that is not restored from an initial checkpoint.
* `early_stopping`: the `EarlyStopping` action and its persisted state.
* `model_gin`: the t5x `MODEL` of gin files (a model file, or the
  `config.gin` a run saved), for the commands that only need the model.

Importing this package has no side effects; its modules import t5x.
"""
