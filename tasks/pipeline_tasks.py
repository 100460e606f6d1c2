"""Training tasks registered from a gin file, for `python -m t5x.train` children.

The pipeline's train stage runs t5x in a separate process; that process must
register the task it trains on from the program datasets the earlier stages
wrote. The stage writes a small gin file that binds this factory as an
evaluated reference (gin's dynamic registration):

    from __gin__ import dynamic_registration
    import tasks.pipeline_tasks
    MIXTURE_OR_TASK_NAME = @tasks.pipeline_tasks.program_task()
    tasks.pipeline_tasks.program_task:
      name = 'pad_run_1a2b3c'
      jsonl_paths = {'gsm8k': '/run/train/gsm8k.jsonl', 'synthetic': '...'}
      vocabulary = %VOCABULARY

so the task is registered the first time t5x builds a dataset config, with
the model's own vocabulary. Several sources become a seqio mixture.
"""

from __future__ import annotations

from typing import Mapping, Optional, Union

import seqio

from tasks import cot_tasks
from tasks import program_tasks

FORMATS = ("program", "cot")


def program_task(name: str,
                 jsonl_paths: Union[str, Mapping[str, str]],
                 rates: Optional[Mapping[str, float]] = None,
                 vocabulary: Optional[seqio.Vocabulary] = None,
                 validation_fraction: float = 0.05,
                 seed: int = 0,
                 task_format: str = "program") -> str:
  """Registers (once) the task or mixture `name`; returns `name`.

  Args:
    name: task (one source) or mixture (several sources) name.
    jsonl_paths: a program-dataset JSONL path, or `{source: path}`.
    rates: mixing rate per source (default: its number of examples).
    vocabulary: the model's vocabulary (default: the tasks' default).
    validation_fraction: share of each source carved out as `validation`.
    seed: seed of that carving.
    task_format: `program` (targets are programs) or `cot` (targets are
      chain-of-thought rationales, `tasks.cot_tasks`).

  Returns:
    `name`, for `MIXTURE_OR_TASK_NAME`.
  """
  if name in seqio.TaskRegistry.names() or name in seqio.MixtureRegistry.names():
    return name
  if task_format not in FORMATS:
    raise ValueError(f"program_task.task_format: unknown {task_format!r}; expected one of {FORMATS}")
  if isinstance(jsonl_paths, str):
    _register(name, jsonl_paths, vocabulary, validation_fraction, seed, task_format)
    return name
  if not jsonl_paths:
    raise ValueError("program_task.jsonl_paths is empty")
  members = []
  for source, path in sorted(jsonl_paths.items()):
    task = f"{name}_{source}"
    _register(task, path, vocabulary, validation_fraction, seed, task_format)
    rate = (rates or {}).get(source)
    if rate is None:
      rate = float(_count_rows(path))
    members.append((task, rate))
  seqio.MixtureRegistry.add(name, members)
  return name


def _register(name, path, vocabulary, validation_fraction, seed, task_format):
  if name in seqio.TaskRegistry.names():
    return
  if task_format == "cot":
    cot_tasks.register_cot_task(name, path, vocabulary=vocabulary,
                                validation_fraction=validation_fraction, seed=seed)
  else:
    program_tasks.register_program_task(name, path, vocabulary=vocabulary,
                                        validation_fraction=validation_fraction, seed=seed)


def _count_rows(path: str) -> int:
  with open(path, "rb") as f:
    return sum(1 for line in f if line.strip())
