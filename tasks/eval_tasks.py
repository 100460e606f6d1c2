"""Eval tasks `pad_eval_<benchmark>`: benchmark questions -> gold answers.

One task per benchmark in `pad_jax.data.benchmarks.BENCHMARKS` (split `test`):
gsm8k, svamp, asdiv, multiarith, addsub, singleeq, singleop, gsmhard.

Raw examples (strings): `id`, `inputs` = the question, `targets` = the gold
answer as text, `answer` = the same text (the metric's gold). Inputs are
`<s> question </s>` in the CodeT5 vocabulary (see `tasks.preprocessors`). The
postprocessor turns predictions into programs and `execution_metric` runs
them.

Source: `seqio.FunctionDataSource` over `benchmarks.load`. The benchmarks are
small local files (at most 7,473 rows) that the readers already validate with
file:line errors; a TFDS builder would add a `download_and_prepare` step and a
second on-disk copy, and would hide reader errors behind TFDS's.
The data directory is resolved when a dataset is built (`data_dir` argument,
else $PAD_DATA_DIR, else `../shared/data`), so importing `tasks` reads nothing.
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import seqio
import tensorflow as tf

from pad_jax.data import benchmarks
from tasks import postprocessors
from tasks import preprocessors
from tasks import registry

SPLIT = "test"
TASK_PREFIX = "pad_eval_"


def task_name(benchmark: str) -> str:
  """`pad_eval_<benchmark>`."""
  return TASK_PREFIX + benchmark


def benchmark_dataset(split: str, shuffle_files: bool = False,
                      seed: Optional[int] = None, *, benchmark: str,
                      data_dir: Optional[str] = None) -> tf.data.Dataset:
  """Raw string examples of one benchmark split, in file order.

  Args:
    split: the benchmark split (e.g. `test`).
    shuffle_files: ignored: one in-memory "file"; seqio shuffles examples.
    seed: ignored (see `shuffle_files`).
    benchmark: a key of `benchmarks.BENCHMARKS`.
    data_dir: data directory (default: $PAD_DATA_DIR, then ../shared/data).

  Returns:
    A dataset of {id, inputs, targets, answer} strings.
  """
  del shuffle_files, seed
  examples = benchmarks.load(benchmark, split, data_dir)
  gold = [preprocessors.format_number(e.answer) for e in examples]
  return preprocessors.string_dataset(
      ids=[e.id for e in examples],
      inputs=[e.question for e in examples],
      targets=gold,
      answers=[e.answer for e in examples])


def register_eval_task(benchmark: str,
                       name: Optional[str] = None,
                       vocabulary: Optional[seqio.Vocabulary] = None,
                       data_dir: Optional[str] = None) -> seqio.Task:
  """Registers (idempotently) the eval task of one benchmark.

  The tasks `pad_eval_<benchmark>` use the CodeT5 vocabulary; a from-scratch
  student with its own vocabulary registers its own copies, e.g.
  `register_eval_task("gsm8k", "pad_eval_gsm8k_demo", vocabulary=vocab)`.

  Args:
    benchmark: a key of `benchmarks.BENCHMARKS`.
    name: task name; default `pad_eval_<benchmark>`.
    vocabulary: default `CodeT5Vocabulary()`.
    data_dir: benchmark data directory (default resolved at dataset time).

  Returns:
    The seqio task.

  Raises:
    ValueError: unknown benchmark, or `name` registered by other code.
  """
  if benchmark not in benchmarks.BENCHMARKS:
    raise ValueError(f"unknown benchmark {benchmark!r}; expected one of "
                     f"{sorted(benchmarks.BENCHMARKS)}")
  name = name or task_name(benchmark)
  vocabulary = vocabulary or preprocessors.default_vocabulary()
  data_dir = os.fspath(data_dir) if data_dir else None
  return registry.register_once(
      name,
      owner="register_eval_task",
      key=("eval", benchmark, vocabulary, data_dir),
      source=seqio.FunctionDataSource(
          functools.partial(benchmark_dataset, benchmark=benchmark,
                            data_dir=data_dir),
          splits=(SPLIT,)),
      preprocessors=preprocessors.tokenize_preprocessors(),
      output_features=preprocessors.output_features(vocabulary),
      postprocess_fn=postprocessors.postprocess,
      metric_fns=[postprocessors.execution_metric])


for _benchmark in benchmarks.BENCHMARKS:
  register_eval_task(_benchmark)
del _benchmark
