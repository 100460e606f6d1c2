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

With `max_lengths` (bound to the run's `%TASK_FEATURE_LENGTHS` by
`gin_configs/runs/drop_over_length.gin`) examples longer than the feature
lengths are dropped instead of truncated (a truncated program teaches a
broken program): each source's kept rows go to `<source>.fit-<in>-<tg>.jsonl`
beside it and the counts to `<source>.fit-<in>-<tg>.json`, which the
pipeline's report shows. Lengths count the tokens the task adds (`<s>` and
`</s>` on inputs, `</s>` on targets; with `decoder_only`, the prompt's
newline and the targets' EOS, `tasks.decoder_tasks.token_lengths`).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Mapping, Optional, Union

import seqio

from pad_jax import atomic
from pad_jax.data import programs
from tasks import cot_tasks
from tasks import decoder_tasks
from tasks import preprocessors
from tasks import program_tasks
from tasks import registry

FORMATS = ("program", "cot")


def program_task(name: str,
                 jsonl_paths: Union[str, Mapping[str, str]],
                 rates: Optional[Mapping[str, float]] = None,
                 vocabulary: Optional[seqio.Vocabulary] = None,
                 validation_fraction: float = 0.05,
                 seed: int = 0,
                 task_format: str = "program",
                 max_lengths: Optional[Mapping[str, int]] = None,
                 decoder_only: bool = False) -> str:
  """Registers (once) the task or mixture `name`; returns `name`.

  The one in-memory program-task factory: `train_hooks.program_task` (the
  command line's `@program_task()`) is a thin alias of it, and
  `tasks.cached_program_tasks.cached_program_task` shares its handling of
  sources (`registry.register_sources`). A second call with equal arguments
  and unchanged files returns at once (t5x evaluates the gin reference for
  every dataset it builds); other arguments or a changed file replace the
  registration.

  Args:
    name: task (one source) or mixture (several sources) name.
    jsonl_paths: a program-dataset JSONL path, or `{source: path}`.
    rates: mixing rate per source (default: its number of examples).
    vocabulary: the model's vocabulary (default: the tasks' default).
    validation_fraction: share of each source carved out as `validation`.
    seed: seed of that carving.
    task_format: `program` (targets are programs) or `cot` (targets are
      chain-of-thought rationales, `tasks.cot_tasks`).
    max_lengths: `{'inputs': N, 'targets': M}`: drop the examples longer
      than that (program format only; None: keep all).
    decoder_only: lay the tokens out for a decoder-only (prefix LM) student
      (`tasks.decoder_tasks`; program format only, needs `vocabulary`).

  Returns:
    `name`, for `MIXTURE_OR_TASK_NAME`.

  Raises:
    ValueError: an unknown `task_format`, `max_lengths` or `decoder_only`
      with `cot`, `decoder_only` without `vocabulary`, no source, or `name`
      registered by other code.
    DataError: a missing or malformed program dataset (file:line:field).
  """
  key = (_frozen(jsonl_paths), _stamps(jsonl_paths), _frozen(rates), vocabulary,
         validation_fraction, seed, task_format, _frozen(max_lengths), decoder_only)
  if _MADE.get(name) == key and (name in seqio.TaskRegistry.names()
                                 or name in seqio.MixtureRegistry.names()):
    return name
  if task_format not in FORMATS:
    raise ValueError(f"program_task.task_format: unknown {task_format!r}; expected one of {FORMATS}")
  if decoder_only and (task_format != "program" or vocabulary is None):
    raise ValueError("program_task.decoder_only: needs task_format 'program' and the "
                     "student's vocabulary")
  if max_lengths is not None:
    if task_format != "program":
      raise ValueError("program_task.max_lengths: only for task_format 'program'")
    if isinstance(jsonl_paths, str):
      jsonl_paths = fitting_rows(jsonl_paths, max_lengths, vocabulary, decoder_only)
    else:
      jsonl_paths = {source: fitting_rows(path, max_lengths, vocabulary, decoder_only)
                     for source, path in jsonl_paths.items()}
  register = cot_tasks.register_cot_task if task_format == "cot" else (
      functools.partial(program_tasks.register_program_task, decoder_only=decoder_only))
  registry.register_sources(
      name, jsonl_paths,
      lambda task_name, path: register(task_name, path, vocabulary=vocabulary,
                                       validation_fraction=validation_fraction, seed=seed),
      rates, default_rate=lambda task, path: float(_count_rows(path)))
  _MADE[name] = key
  return name


# name -> the arguments `program_task` registered it with.
_MADE: dict[str, tuple] = {}


def _frozen(value: Any) -> Any:
  """A gin-given mapping as a comparable tuple (other values unchanged)."""
  if isinstance(value, Mapping):
    return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
  return value


def _stamps(jsonl_paths: Union[str, Mapping[str, str]]) -> tuple:
  """(mtime, size) of each file: a changed file makes `program_task` register again."""
  paths = [jsonl_paths] if isinstance(jsonl_paths, str) else sorted(jsonl_paths.values())
  stamps = []
  for path in paths:
    try:
      stat = os.stat(path)
      stamps.append((stat.st_mtime_ns, stat.st_size))
    except OSError:
      stamps.append(None)  # Registering raises the DataError that names it.
  return tuple(stamps)


def _count_rows(path: str) -> int:
  with open(path, "rb") as f:
    return sum(1 for line in f if line.strip())


def fit_paths(path: str, max_lengths: Mapping[str, int]) -> tuple[str, str]:
  """(kept rows JSONL, counts JSON) of `path` for `max_lengths`."""
  stem = path[:-len(".jsonl")] if path.endswith(".jsonl") else path
  suffix = f".fit-{int(max_lengths['inputs'])}-{int(max_lengths['targets'])}"
  return stem + suffix + ".jsonl", stem + suffix + ".json"


def fitting_rows(path: str, max_lengths: Mapping[str, int],
                 vocabulary: Optional[seqio.Vocabulary] = None,
                 decoder_only: bool = False) -> str:
  """Writes the rows of `path` that fit `max_lengths`; returns their path.

  Deterministic and idempotent (t5x builds several dataset configs, and a
  resumed run rebuilds them): the files are rewritten atomically with the
  same content.

  Raises:
    ValueError: `max_lengths` lacks `inputs` or `targets`.
    DataError: a malformed program dataset.
  """
  missing = {"inputs", "targets"} - set(max_lengths)
  if missing:
    raise ValueError(f"program_task.max_lengths: needs {sorted(missing)}, got {dict(max_lengths)}")
  vocabulary = vocabulary or preprocessors.default_vocabulary()
  records = programs.read_programs(path)
  kept, counts = [], {"rows": len(records), "kept": 0, "inputs_too_long": 0,
                      "targets_too_long": 0}
  for record in records:
    if decoder_only:
      lengths = decoder_tasks.token_lengths(vocabulary, record.question, record.program)
    else:  # `<s> question </s>` and `program </s>`, as the task's preprocessors add.
      lengths = (len(vocabulary.encode(record.question)) + 2,
                 len(vocabulary.encode(record.program)) + 1)
    long_inputs = lengths[0] > max_lengths["inputs"]
    long_targets = lengths[1] > max_lengths["targets"]
    counts["inputs_too_long"] += long_inputs
    counts["targets_too_long"] += long_targets
    if not (long_inputs or long_targets):
      kept.append(record)
  counts["kept"] = len(kept)
  if not kept:
    raise ValueError(f"{path}: no example fits program_task.max_lengths={dict(max_lengths)}")
  rows_path, counts_path = fit_paths(path, max_lengths)
  programs.write_programs(rows_path, kept)
  atomic.write_json(counts_path, {"source": os.path.basename(path),
                                  "max_lengths": dict(max_lengths), **counts})
  return rows_path


def fit_counts(data_dir: str) -> dict[str, dict[str, Any]]:
  """`{source file: counts}` of every `*.fit-*.json` in `data_dir` (the report's view)."""
  out = {}
  if os.path.isdir(data_dir):
    for name in sorted(os.listdir(data_dir)):
      if ".fit-" in name and name.endswith(".json"):
        with open(os.path.join(data_dir, name)) as f:
          out[name] = json.load(f)
  return out
