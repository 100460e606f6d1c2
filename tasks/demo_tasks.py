"""The `pad_demo_synthetic` seqio task: templated problems -> programs.

Raw examples (string features): `id`, `inputs` (the question), `targets` (the
gold `solution()` program) and `answer` (the gold number as text). Splits
`train`, `validation` and `test` come from `pad_jax.data.synthetic.generate`
with seed 0 and never share a template instance. Vocabulary: the committed
demo BPE (`pad_jax.data.synthetic.demo_vocabulary`, digits split).

Data source: `seqio.FunctionDataSource`, because the data are generated in
memory in well under a second; there is nothing to download or prepare.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Mapping, Optional

import seqio
import tensorflow as tf

from pad_jax.data import synthetic

TASK_NAME = "pad_demo_synthetic"
SIZES = {"train": 20000, "validation": 200, "test": 200}
FEATURE_LENGTHS = {"inputs": 64, "targets": 128}
_DATA_SEED = 0


@functools.lru_cache(maxsize=None)
def _columns(split: str) -> Dict[str, tuple]:
  records = synthetic.generate(split, SIZES[split], seed=_DATA_SEED)
  return {
      "id": tuple(r.id for r in records),
      "inputs": tuple(r.question for r in records),
      "targets": tuple(r.program for r in records),
      "answer": tuple(_answer_text(r.answer) for r in records),
  }


def _answer_text(answer: float) -> str:
  """`42` for whole numbers (not `42.0`), else the shortest float text."""
  return str(int(answer)) if float(answer).is_integer() else repr(float(answer))


def dataset_fn(split: str, shuffle_files: bool,
               seed: Optional[int] = None) -> tf.data.Dataset:
  """The raw examples of `split` (generated once per process)."""
  del shuffle_files, seed  # One in-memory "file"; seqio shuffles examples.
  columns = _columns(split)
  return tf.data.Dataset.from_tensor_slices(
      {key: tf.constant(list(values), tf.string)
       for key, values in columns.items()})


def postprocess(output: Any, example: Optional[Mapping[str, Any]] = None,
                is_target: bool = False) -> Any:
  """Targets -> the gold number; predictions -> program text.

  Delegates to `tasks.postprocessors.extract_program`, the project's one
  output postprocessor (imported lazily: it lives in another module).
  """
  from tasks import postprocessors  # pylint: disable=g-import-not-at-top
  return postprocessors.extract_program(output, example=example,
                                        is_target=is_target)


def execution_metrics(targets, predictions) -> Dict[str, Any]:
  """Executes every predicted program; see `pad_jax.metrics`."""
  from pad_jax import metrics  # pylint: disable=g-import-not-at-top
  return metrics.execution_metrics(targets, predictions)


def register(name: str = TASK_NAME,
             vocabulary: Optional[seqio.Vocabulary] = None) -> seqio.Task:
  """Registers the synthetic task under `name` (replacing an older one)."""
  vocabulary = vocabulary or synthetic.demo_vocabulary()
  output_features = {
      "inputs": seqio.Feature(vocabulary, add_eos=True, required=False),
      "targets": seqio.Feature(vocabulary, add_eos=True),
  }
  seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(
          dataset_fn, splits=synthetic.SPLITS, num_input_examples=SIZES),
      preprocessors=[
          seqio.preprocessors.tokenize,
          seqio.preprocessors.append_eos_after_trim,
      ],
      output_features=output_features,
      postprocess_fn=postprocess,
      metric_fns=[execution_metrics],
  )


register()
