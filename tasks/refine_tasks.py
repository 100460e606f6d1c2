"""Self-refinement tasks (PaD stage III): (question + faulty program + feedback) -> program.

`register_refine_task(name, jsonl_path, ...)` registers a seqio task from a
refinement file (`python -m pad_jax.refine`, `pad_jax.refine.data`): raw
examples `id`, `inputs` = the refinement input
(`pad_jax.data.refine_inputs.refinement_input`, cut to `max_input_tokens` of
the task's vocabulary, `<s>`/`</s>` included), `targets` = the verified
program, `answer` (so validation runs the execution metric).

`refine_mixture(...)` is what `runs/pad_refine.gin` trains on: the
refinement task mixed with the original question -> program task
(`register_program_task`), `<name>_refinement` + `<name>_programs`, each at
a rate of its number of training examples by default. Splits are carved per
question id, as for program tasks (the same seed puts a question in the same
split of both).

`decoder_only=True` lays both tasks out for a decoder-only (prefix LM)
student (`tasks.decoder_tasks`): the prompt is
`decoder_tasks.prompt_text(refinement input)`, no EOS, the target the program
+ EOS -- the prompt `pad_jax.infer --refine_rounds` gives such a student
(`pad_jax.decoding.decoder.Decoder.encode`). `runs/pad_refine.gin` binds
`vocabulary`; `refine_mixture.decoder_only = True` is bound by the pipeline's
refine stage (its round's `refine.gin`) for a `DecoderOnlyModel` student, and
by hand with `--gin.refine_mixture.decoder_only=True` (pad_refine.gin's
header).
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Any, Optional

import gin
import seqio
import tensorflow as tf

from pad_jax.errors import DataError
from pad_jax.data import refine_inputs
from tasks import decoder_tasks
from tasks import postprocessors
from tasks import preprocessors
from tasks import program_tasks
from tasks import registry

SPLITS = program_tasks.SPLITS


@functools.lru_cache(maxsize=8)
def _split_rows(path: str, validation_fraction: float, seed: int, mtime_ns: int,
                size: int) -> dict[str, tuple[dict[str, Any], ...]]:
  del mtime_ns, size  # Cache key only: a changed file is re-read.
  rows = refine_inputs.read_rows(path)
  validation = program_tasks.split_question_ids([r["question_id"] for r in rows],
                                                validation_fraction, seed)
  return {"train": tuple(r for r in rows if r["question_id"] not in validation),
          "validation": tuple(r for r in rows if r["question_id"] in validation)}


def load_split(path: str, split: str, validation_fraction: float = 0.05,
               seed: int = 0) -> tuple[dict[str, Any], ...]:
  """The rows of one split of a refinement file, in file order."""
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataError(path, None, None, "refinement file not found (python -m pad_jax.refine "
                    "writes OUT/refine.jsonl)")
  stat = os.stat(path)
  return _split_rows(path, validation_fraction, seed, stat.st_mtime_ns, stat.st_size)[split]


def refine_dataset(split: str, shuffle_files: bool = False, seed: Optional[int] = None, *,
                   path: str, vocabulary: seqio.Vocabulary, max_input_tokens: int,
                   validation_fraction: float, split_seed: int) -> tf.data.Dataset:
  """Raw string examples {id, inputs, targets, answer} of one split."""
  del shuffle_files, seed  # One in-memory "file"; seqio shuffles examples.
  rows = load_split(path, split, validation_fraction, split_seed)
  return preprocessors.string_dataset(
      ids=[r["id"] for r in rows],
      inputs=[refine_inputs.refinement_input(r["question"], r["program"], r["feedback"],
                                          vocabulary, max_input_tokens) for r in rows],
      targets=[r["target"] for r in rows],
      answers=[float(r["answer"]) for r in rows])


@gin.configurable(module="tasks.refine_tasks")
def register_refine_task(name: str, jsonl_path: str,
                         vocabulary: Optional[seqio.Vocabulary] = None,
                         validation_fraction: float = 0.05, seed: int = 0,
                         max_input_tokens: int = refine_inputs.MAX_INPUT_TOKENS,
                         decoder_only: bool = False) -> seqio.Task:
  """Registers (idempotently) a refinement task from a refine.jsonl file.

  `decoder_only`: the decoder-only layout (`tasks.decoder_tasks`; needs
  `vocabulary`).

  Raises:
    DataError: a missing, empty or malformed file (file:line:field).
    ValueError: bad `validation_fraction`, or `name` registered by other code.
  """
  if not 0 <= validation_fraction < 1:
    raise ValueError(f"validation_fraction={validation_fraction} must be in [0, 1)")
  if decoder_only and vocabulary is None:
    raise ValueError("decoder_only=True needs the student's vocabulary")
  path = str(pathlib.Path(jsonl_path).expanduser().resolve())
  counts = {s: len(load_split(path, s, validation_fraction, seed)) for s in SPLITS}
  if not sum(counts.values()):
    raise DataError(path, None, None, "no refinement rows: nothing to train on")
  stat = os.stat(path)
  vocabulary = vocabulary or preprocessors.default_vocabulary()
  return registry.register_once(
      name, owner="register_refine_task",
      key=("refine", path, stat.st_mtime_ns, stat.st_size, vocabulary, validation_fraction,
           seed, max_input_tokens, decoder_only),
      source=seqio.FunctionDataSource(
          functools.partial(refine_dataset, path=path, vocabulary=vocabulary,
                            max_input_tokens=max_input_tokens,
                            validation_fraction=validation_fraction, split_seed=seed),
          splits=SPLITS, num_input_examples=counts),
      preprocessors=(decoder_tasks.decoder_preprocessors() if decoder_only
                     else preprocessors.tokenize_preprocessors()),
      output_features=(decoder_tasks.decoder_output_features(vocabulary) if decoder_only
                       else preprocessors.output_features(vocabulary)),
      postprocess_fn=postprocessors.postprocess,
      metric_fns=[postprocessors.execution_metric])


@gin.configurable(module="tasks.refine_tasks")
def refine_mixture(refine_jsonl_path: str, programs_jsonl_path: str, name: str = "pad_refine",
                   vocabulary: Optional[seqio.Vocabulary] = None,
                   refine_rate: Optional[float] = None, programs_rate: Optional[float] = None,
                   validation_fraction: float = 0.05, seed: int = 0,
                   max_input_tokens: int = refine_inputs.MAX_INPUT_TOKENS,
                   decoder_only: bool = False) -> str:
  """Registers the refinement + original-programs mixture `name`; returns `name`.

  Tasks `<name>_refinement` and `<name>_programs` (both decoder-only with
  `decoder_only`); a rate of None is the task's number of training examples.
  """
  refine = register_refine_task(f"{name}_refinement", refine_jsonl_path, vocabulary,
                                validation_fraction, seed, max_input_tokens, decoder_only)
  programs = program_tasks.register_program_task(f"{name}_programs", programs_jsonl_path,
                                                 vocabulary, validation_fraction, seed,
                                                 decoder_only=decoder_only)
  members = [(refine, refine_rate or float(refine.num_input_examples("train"))),
             (programs, programs_rate or float(programs.num_input_examples("train")))]
  registry.register_mixture_once(name, members)
  return name


@gin.configurable(module="tasks.refine_tasks")
def programs_task_of(name: str = "pad_refine") -> str:
  """The original-programs task inside mixture `name` (what validation decodes)."""
  return f"{name}_programs"
