"""Run length and learning rate: small gin-callable values of the run files."""

from __future__ import annotations

from absl import logging
import numpy as np
import optax

from pad_jax.t5x_hooks import task_lookup


def steps_for_epochs(
    mixture_or_task_name: str,
    epochs: float,
    batch_size: int,
    split: str = "train",
) -> int:
  """Training steps that cover `epochs` passes over `split` (at least 1).

  Used as the default `TRAIN_STEPS` of `pad_finetune.gin` ("up to 50 epochs");
  `--gin.TRAIN_STEPS=N` replaces it.

  Args:
    mixture_or_task_name: registered seqio task or mixture.
    epochs: number of passes over the split.
    batch_size: global batch size (examples per step, no packing).
    split: the split to count.

  Returns:
    ceil(epochs * examples / batch_size).
  """
  n = task_lookup.count_examples(mixture_or_task_name, split)
  if n == 0:
    raise ValueError(
        f"task {mixture_or_task_name!r} split {split!r} has no examples"
    )
  steps = max(1, int(np.ceil(epochs * n / batch_size)))
  logging.info(
      "%s/%s: %d examples, %s epochs at batch %d -> %d steps",
      mixture_or_task_name, split, n, epochs, batch_size, steps,
  )
  return steps


def learning_rate_schedule(
    peak_value: float,
    warmup_steps: int,
    total_steps: int,
    decay: str = "linear",
) -> optax.Schedule:
  """Linear warmup to `peak_value`, then linear decay to 0 or constant.

  The same schedule object is given to the optax optimizer (which applies it)
  and to `t5x.trainer.Trainer.learning_rate_fn` (which logs it to
  TensorBoard as `learning_rate`).

  Args:
    peak_value: learning rate after warmup.
    warmup_steps: steps of linear warmup from 0.
    total_steps: last step of the run (end of the decay).
    decay: "linear" (to 0 at `total_steps`) or "constant".

  Returns:
    An optax schedule `step -> learning rate`.
  """
  if decay not in ("linear", "constant"):
    raise ValueError(f"decay must be 'linear' or 'constant', got {decay!r}")
  warmup_steps = int(warmup_steps)
  warmup = optax.linear_schedule(0.0, peak_value, max(warmup_steps, 1))
  if decay == "constant":
    after = optax.constant_schedule(peak_value)
  else:
    after = optax.linear_schedule(
        peak_value, 0.0, max(int(total_steps) - warmup_steps, 1)
    )
  if warmup_steps <= 0:
    return after
  return optax.join_schedules([warmup, after], [warmup_steps])
