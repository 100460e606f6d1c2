"""Pieces shared by every pad-jax seqio task: features, BOS, raw datasets.

Token layout of every task (CodeT5's, see `pad_jax.student.vocab`):

  inputs:  `<s>` question `</s>`  -> ids `1 ... 2`   (like HF's CodeT5 tokenizer)
  targets: program-or-answer `</s>` -> ids `... 2`    (t5x starts the decoder
           with pad 0 itself, so targets carry no BOS)

The preprocessor chain is `tokenize -> add_bos -> append_eos_after_trim`: BOS
is prepended before trimming, so a long question loses its tail, never its
`<s>`, and the EOS is always last.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import seqio
import tensorflow as tf

from pad_jax.student import vocab as vocab_lib

# Default `task_feature_lengths` for t5x/seqio (`get_dataset(...)`, gin's
# TASK_FEATURE_LENGTHS): questions fit in 128 CodeT5 tokens, programs in 256.
DEFAULT_FEATURE_LENGTHS = {"inputs": 128, "targets": 256}
RAW_FEATURES = ("id", "inputs", "targets", "answer")


def default_vocabulary() -> vocab_lib.CodeT5Vocabulary:
  """The CodeT5 vocabulary (32,100 ids); reads no file until first used."""
  return vocab_lib.CodeT5Vocabulary()


def output_features(vocabulary: Optional[seqio.Vocabulary] = None
                   ) -> dict[str, seqio.Feature]:
  """`inputs` and `targets`, both with EOS, over `vocabulary` (default CodeT5)."""
  vocabulary = vocabulary or default_vocabulary()
  return {
      "inputs": seqio.Feature(vocabulary, add_eos=True, required=True),
      "targets": seqio.Feature(vocabulary, add_eos=True),
  }


@seqio.map_over_dataset
def add_bos(features: Mapping[str, tf.Tensor],
            bos_id: int = vocab_lib.BOS_ID) -> dict[str, tf.Tensor]:
  """Prepends `bos_id` to the tokenized `inputs` (CodeT5's `<s>`).

  Run after `seqio.preprocessors.tokenize` and before
  `append_eos_after_trim`. The `inputs_pretokenized` string is unchanged.

  Args:
    features: a tokenized example.
    bos_id: the id to prepend (1 in every pad-jax vocabulary).

  Returns:
    The example with `inputs` = `[bos_id] + inputs`.
  """
  features = dict(features)
  inputs = features["inputs"]
  features["inputs"] = tf.concat(
      [tf.constant([bos_id], dtype=inputs.dtype), inputs], axis=0)
  return features


def tokenize_preprocessors() -> list:
  """`tokenize`, `add_bos`, `append_eos_after_trim` (in that order)."""
  return [
      seqio.preprocessors.tokenize,
      add_bos,
      seqio.preprocessors.append_eos_after_trim,
  ]


def format_number(value: float) -> str:
  """Gold answers as text: `18` for integral values, else `repr` (`2.5`)."""
  if math.isfinite(value) and value == int(value) and abs(value) < 1e16:
    return str(int(value))
  return repr(float(value))


def string_dataset(ids: Sequence[str], inputs: Sequence[str],
                   targets: Sequence[str],
                   answers: Sequence[float]) -> tf.data.Dataset:
  """A dataset of raw string examples with the four `RAW_FEATURES`."""
  columns = {
      "id": list(ids),
      "inputs": list(inputs),
      "targets": list(targets),
      "answer": [format_number(a) for a in answers],
  }
  return tf.data.Dataset.from_tensor_slices(
      {k: tf.constant(v, dtype=tf.string, shape=[len(v)])
       for k, v in columns.items()})
