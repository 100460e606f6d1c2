"""The `pad_demo_synthetic` seqio task: templated problems -> programs.

Raw examples (string features): `id`, `inputs` (the question), `targets` (the
gold `solution()` program) and `answer` (the gold number as text); token
layout, postprocessor and execution metric are the ones every pad-jax task
shares (`tasks.preprocessors`, `tasks.postprocessors`). Splits
`train`, `validation` and `test` come from `pad_jax.data.synthetic.generate`
with seed 0 and never share a template instance. Vocabulary: the committed
demo BPE (`pad_jax.data.synthetic.demo_vocabulary`, digits split).

Data source: `seqio.FunctionDataSource`, because the data are generated in
memory in well under a second; there is nothing to download or prepare.
"""

from __future__ import annotations

import functools
from typing import Optional

import seqio
import tensorflow as tf

from pad_jax.data import synthetic
from tasks import postprocessors
from tasks import preprocessors
from tasks import registry

TASK_NAME = "pad_demo_synthetic"
SIZES = {"train": 20000, "validation": 200, "test": 200}
# Longest test example: 54 question tokens, 122 program tokens (+ BOS/EOS).
FEATURE_LENGTHS = {"inputs": 64, "targets": 128}
_DATA_SEED = 0


@functools.lru_cache(maxsize=None)
def _records(split: str) -> tuple:
  return tuple(synthetic.generate(split, SIZES[split], seed=_DATA_SEED))


def dataset_fn(split: str, shuffle_files: bool = False,
               seed: Optional[int] = None) -> tf.data.Dataset:
  """The raw examples of `split` (generated once per process)."""
  del shuffle_files, seed  # One in-memory "file"; seqio shuffles examples.
  records = _records(split)
  return preprocessors.string_dataset(
      ids=[r.id for r in records],
      inputs=[r.question for r in records],
      targets=[r.program for r in records],
      answers=[r.answer for r in records])


def register(name: str = TASK_NAME,
             vocabulary: Optional[seqio.Vocabulary] = None) -> seqio.Task:
  """Registers the synthetic task as `name` (idempotent).

  Args:
    name: the task name.
    vocabulary: the model's vocabulary (default: the demo BPE,
      `pad_jax.data.synthetic.demo_vocabulary()`).

  Returns:
    The seqio task (splits `train`, `validation`, `test`).
  """
  vocabulary = vocabulary or synthetic.demo_vocabulary()
  return registry.register_once(
      name,
      owner="tasks.demo_tasks.register",
      key=("synthetic", vocabulary, tuple(sorted(SIZES.items())), _DATA_SEED),
      source=seqio.FunctionDataSource(
          dataset_fn, splits=synthetic.SPLITS,
          num_input_examples=dict(SIZES)),
      preprocessors=preprocessors.tokenize_preprocessors(),
      output_features=preprocessors.output_features(vocabulary),
      postprocess_fn=postprocessors.postprocess,
      metric_fns=[postprocessors.execution_metric])


register()
