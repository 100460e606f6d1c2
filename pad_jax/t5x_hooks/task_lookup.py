"""Seqio tasks by name, for t5x: readable errors and command-line datasets."""

from __future__ import annotations

from typing import Any, Optional

import seqio
from t5x import utils

from tasks import pipeline_tasks


def task_name(task: str | seqio.Task | seqio.Mixture) -> str:
  """The name of a task given by name or as the object (t5x accepts both)."""
  return task if isinstance(task, str) else task.name


def get_task(name: str | seqio.Task | seqio.Mixture
            ) -> seqio.Task | seqio.Mixture:
  """Returns the registered seqio task or mixture `name`, or fails clearly."""
  if not isinstance(name, str):
    return name
  try:
    return seqio.get_mixture_or_task(name)
  except ValueError:
    pass
  known = sorted(
      n
      for n in (*seqio.TaskRegistry.names(), *seqio.MixtureRegistry.names())
      if n.startswith("pad_")
  )
  raise ValueError(
      f"MIXTURE_OR_TASK_NAME: no seqio task or mixture named {name!r}. "
      f"Registered pad tasks: {', '.join(known) or '(none)'}. Tasks are "
      "registered by `import tasks` (the gin files in gin_configs/runs do "
      "this); a program dataset becomes a task with "
      "tasks.program_tasks.register_program_task(name, jsonl_path)."
  )


def sub_tasks(task: seqio.Task | seqio.Mixture) -> list[seqio.Task]:
  """The tasks of a mixture, or `[task]`."""
  if isinstance(task, seqio.Mixture):
    return list(task.tasks)
  return [task]


def checked_task_name(name: str) -> str:
  """Returns `name` after checking that the task exists (for gin files)."""
  get_task(name)
  return name


def count_examples(mixture_or_task_name: str, split: str) -> int:
  """Number of examples in `split` of a task (sum over a mixture's tasks)."""
  total = 0
  for task in sub_tasks(get_task(mixture_or_task_name)):
    n = task.num_input_examples(split)
    if n is None:  # Count raw examples; no preprocessing needed.
      ds = task.source.get_dataset(split=split, shuffle=False)
      n = int(ds.reduce(0, lambda count, _: count + 1))
    total += int(n)
  return total


def program_task(
    jsonl_path: str,
    name: str = "pad_programs",
    vocabulary: Optional[seqio.Vocabulary] = None,
    validation_fraction: float = 0.05,
    seed: int = 0,
    decoder_only: bool = False,
) -> str:
  """Registers a program-dataset JSONL as a task and returns its name.

  For the command line: `--gin.MIXTURE_OR_TASK_NAME="@program_task()"
  --gin.program_task.jsonl_path="'programs.jsonl'"` trains on a file without
  writing a registration module. `pad_finetune.gin` binds `vocabulary` to the
  model file's `VOCABULARY`, so the task always matches the model. A thin
  alias of `tasks.pipeline_tasks.program_task` (one file, program format)
  that keeps the gin name `train_hooks.program_task` of the run files and of
  saved config.gin files.

  Args:
    jsonl_path: a program-dataset JSONL file.
    name: the task name.
    vocabulary: the model's vocabulary (None: CodeT5's).
    validation_fraction: share of questions held out as `validation`.
    seed: seed of the train/validation carving.
    decoder_only: the decoder-only (prefix LM) token layout of
      `tasks.decoder_tasks`; the decoder model files
      (models/smollm2_135m.gin and those that include it) bind it, since it
      is what their network reads.

  Returns:
    `name`.
  """
  return pipeline_tasks.program_task(
      name, jsonl_path, vocabulary=vocabulary,
      validation_fraction=validation_fraction, seed=seed,
      decoder_only=decoder_only,
  )


def verify_task_and_vocabulary(cfg: utils.DatasetConfig, model: Any) -> None:
  """`verify_matching_vocabs_fn` for t5x: task exists and vocabularies match."""
  get_task(cfg.mixture_or_task_name)
  try:
    utils.verify_matching_vocabs(cfg, model)
  except ValueError as e:
    raise ValueError(
        f"model/task mismatch for task "
        f"{task_name(cfg.mixture_or_task_name)!r}: {e} "
        "The model gin file and the task must use the same vocabulary."
    ) from None
