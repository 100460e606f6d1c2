"""Training tasks from program-dataset JSONL files: question -> program.

`register_program_task(name, jsonl_path, ...)` registers a seqio task whose
raw examples are `id` (the question id), `inputs` = question, `targets` =
program and `answer` = the gold number as text (so validation runs the same
execution metric as the eval tasks). Tokens are laid out for the
encoder-decoder student (`tasks.preprocessors`), or with `decoder_only=True`
for a decoder-only one (`tasks.decoder_tasks`).

Splits `train` / `validation` are carved deterministically per QUESTION: the
distinct question ids are ranked by SHA-256 of `"<seed>:<id>"` and the first
`round(validation_fraction * n_questions)` (at least one when there are two
or more questions and the fraction is > 0) go to `validation`. Every sample of
a question lands in the same split, so no question leaks from train into
validation; the carving depends only on the set of ids and the seed, not on
row order. 5% as in the PaD paper by default.

Source: `seqio.FunctionDataSource`: the file is read (and fully validated by
`pad_jax.data.programs.read_programs`, which raises file:line:field errors)
when registering and again, if it changed, when a dataset is built.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
from typing import Optional

import gin
import seqio
import tensorflow as tf

from pad_jax.data import programs
from pad_jax.errors import DataError
from tasks import decoder_tasks
from tasks import postprocessors
from tasks import preprocessors
from tasks import registry

SPLITS = ("train", "validation")


def split_question_ids(ids: list[str], validation_fraction: float,
                       seed: int) -> frozenset[str]:
  """The question ids that form the validation split.

  Args:
    ids: question ids (duplicates allowed: several samples per question).
    validation_fraction: share of distinct questions for validation, [0, 1).
    seed: changes which questions are drawn.

  Returns:
    The validation ids.
  """
  unique = sorted(set(ids))
  if validation_fraction <= 0 or len(unique) < 2:
    return frozenset()
  count = max(1, round(validation_fraction * len(unique)))
  ranked = sorted(
      unique,
      key=lambda i: hashlib.sha256(f"{seed}:{i}".encode("utf-8")).hexdigest())
  return frozenset(ranked[:count])


@functools.lru_cache(maxsize=16)
def _split_records(path: str, validation_fraction: float, seed: int,
                   mtime_ns: int, size: int
                  ) -> dict[str, tuple[programs.ProgramRecord, ...]]:
  del mtime_ns, size  # Part of the cache key only: a changed file is re-read.
  records = programs.read_programs(path)
  validation = split_question_ids([r.id for r in records],
                                  validation_fraction, seed)
  return {
      "train": tuple(r for r in records if r.id not in validation),
      "validation": tuple(r for r in records if r.id in validation),
  }


def load_split(path: str, split: str, validation_fraction: float = 0.05,
               seed: int = 0) -> tuple[programs.ProgramRecord, ...]:
  """The records of one split of a program dataset, in file order.

  Args:
    path: the program-dataset JSONL file.
    split: `train` or `validation`.
    validation_fraction: see `register_program_task`.
    seed: see `register_program_task`.

  Returns:
    The records.

  Raises:
    DataError: missing or malformed file.
    ValueError: unknown split.
  """
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
  path = os.fspath(path)
  try:
    stat = os.stat(path)
  except FileNotFoundError:
    programs.read_programs(path)  # Raises the project's DataError.
    raise
  return _split_records(path, validation_fraction, seed, stat.st_mtime_ns,
                        stat.st_size)[split]


def program_dataset(split: str, shuffle_files: bool = False,
                    seed: Optional[int] = None, *, path: str,
                    validation_fraction: float,
                    split_seed: int) -> tf.data.Dataset:
  """Raw string examples {id, inputs, targets, answer} of one split."""
  del shuffle_files, seed  # One in-memory "file"; seqio shuffles examples.
  records = load_split(path, split, validation_fraction, split_seed)
  return preprocessors.string_dataset(
      ids=[r.id for r in records],
      inputs=[r.question for r in records],
      targets=[r.program for r in records],
      answers=[r.answer for r in records])


@gin.configurable(module="tasks.program_tasks")
def register_program_task(name: str,
                          jsonl_path: str,
                          vocabulary: Optional[seqio.Vocabulary] = None,
                          validation_fraction: float = 0.05,
                          seed: int = 0,
                          decoder_only: bool = False) -> seqio.Task:
  """Registers a question -> program training task from a JSONL file.

  Idempotent: calling again with the same arguments (and an unchanged file)
  returns the registered task; different arguments or a changed file replace
  it. Returns the task, so a gin file may bind
  `utils.DatasetConfig.mixture_or_task_name = @register_program_task()`.

  Args:
    name: the seqio task name.
    jsonl_path: a program-dataset JSONL file (`pad_jax.data.programs`).
    vocabulary: the model's vocabulary (default `CodeT5Vocabulary()`); a
      from-scratch student passes its trained vocabulary.
    validation_fraction: share of distinct questions held out as
      `validation`, in [0, 1).
    seed: seed of the train/validation carving.
    decoder_only: lay the tokens out for a decoder-only (prefix LM) student,
      `tasks.decoder_tasks`; needs `vocabulary`.

  Returns:
    The seqio task (splits `train` and `validation`).

  Raises:
    DataError: missing, empty or malformed JSONL (file:line:field).
    ValueError: bad `validation_fraction`, `decoder_only` without
      `vocabulary`, or `name` registered by other code.
  """
  if decoder_only and vocabulary is None:
    raise ValueError("register_program_task.vocabulary: a decoder-only student needs "
                     "its own vocabulary (e.g. HFTokenizerVocabulary)")
  if not 0 <= validation_fraction < 1:
    raise ValueError(f"validation_fraction={validation_fraction} must be in "
                     "[0, 1)")
  path = str(pathlib.Path(jsonl_path).expanduser().resolve())
  counts = {split: len(load_split(path, split, validation_fraction, seed))
            for split in SPLITS}  # Validates the whole file now.
  if not sum(counts.values()):
    raise DataError(path, None, None, "no program records: nothing to train on")
  stat = os.stat(path)
  vocabulary = vocabulary or preprocessors.default_vocabulary()
  return registry.register_once(
      name,
      owner="register_program_task",
      key=("program", path, stat.st_mtime_ns, stat.st_size, vocabulary,
           validation_fraction, seed, decoder_only),
      source=seqio.FunctionDataSource(
          functools.partial(program_dataset, path=path,
                            validation_fraction=validation_fraction,
                            split_seed=seed),
          splits=SPLITS,
          num_input_examples=counts),
      preprocessors=(decoder_tasks.decoder_preprocessors() if decoder_only
                     else preprocessors.tokenize_preprocessors()),
      output_features=(decoder_tasks.decoder_output_features(vocabulary) if decoder_only
                       else preprocessors.output_features(vocabulary)),
      postprocess_fn=postprocessors.postprocess,
      metric_fns=[postprocessors.execution_metric])
