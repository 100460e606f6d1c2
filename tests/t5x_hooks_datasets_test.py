"""pad_jax.t5x_hooks.datasets: truncation count and the in-memory train split."""

import json

import numpy as np
import pytest
from t5x import models
from t5x import utils

import tasks  # pylint: disable=unused-import  (registers the pad_* tasks)
from pad_jax.data import synthetic
from pad_jax.t5x_hooks import datasets
from tasks import program_tasks
import train_testlib as tl


@pytest.fixture(scope="module")
def task(tmp_path_factory):
  jsonl = tl.write_program_dataset(
      tmp_path_factory.mktemp("datasets") / "programs.jsonl")
  program_tasks.register_program_task(
      tl.TASK, str(jsonl), vocabulary=synthetic.demo_vocabulary(),
      validation_fraction=0.1)
  return tl.TASK


def _cfg(task, targets, shuffle=False):
  return utils.DatasetConfig(
      mixture_or_task_name=task, split="train", batch_size=8,
      shuffle=shuffle, seed=0, use_cached=False, pack=False,
      task_feature_lengths={"inputs": 64, "targets": targets})


def test_feature_lengths_too_short_fail_with_counts(task, tmp_path):
  with pytest.raises(ValueError, match="TASK_FEATURE_LENGTHS too short for "
                     "the data.*targets: [0-9]+/81 examples longer than 48 "
                     "tokens"):
    datasets.check_truncation(_cfg(task, 48), {"targets": 0.01},
                              str(tmp_path))
  report = json.loads(
      (tmp_path / f"truncation-{task}-train.json").read_text())
  assert report["examples"] == 81 and report["truncated"]["targets"] > 0
  assert len(report["truncated_ids"]["targets"]) <= 5
  # Allowing that fraction turns the error into a logged count.
  allowed = {"targets": report["truncated"]["targets"] / 81}
  assert datasets.check_truncation(_cfg(task, 48), allowed).truncated == \
      report["truncated"]


def test_in_memory_train_stream_trims_and_batches_like_t5x(task):
  cfg = _cfg(task, 128, shuffle=True)
  converter = models.EncoderDecoderModel.FEATURE_CONVERTER_CLS
  batch = next(datasets.get_train_dataset(cfg, 0, 1, converter)
               .as_numpy_iterator())
  assert batch["encoder_input_tokens"].shape == (8, 64)
  assert batch["decoder_target_tokens"].shape == (8, 128)
  again = next(datasets.get_train_dataset(cfg, 0, 1, converter)
               .as_numpy_iterator())
  assert np.array_equal(batch["decoder_target_tokens"],
                        again["decoder_target_tokens"])  # seeded order
  with pytest.raises(ValueError, match="must be divisible"):
    datasets.get_train_dataset(cfg, 0, 3, converter)


def test_trim_keeps_eos_last():
  tokens = np.array([5, 6, 7, 8, 1], np.int32)
  assert datasets.trim(tokens, 3, 1).tolist() == [5, 6, 1]
  assert datasets.trim(tokens, 9, 1).tolist() == tokens.tolist()
  assert datasets.trim(tokens, 3, None).tolist() == [5, 6, 7]


def test_batch_tokenization_gives_the_ids_of_seqio_and_the_vocabulary(task):
  """tokenize_split's batch path == seqio's tokenize chain == one-at-a-time encode."""
  t = tasks.program_tasks.seqio.TaskRegistry.get(task)
  lengths = {"inputs": 64, "targets": 128}
  assert datasets._batch_tokenizable(t, lengths)  # pylint: disable=protected-access
  fast = datasets.tokenize_split(task, "train", lengths)
  slow = list(t.get_dataset(sequence_length=None, split="train", shuffle=False,
                            num_epochs=1).as_numpy_iterator())
  vocabulary = synthetic.demo_vocabulary()
  assert len(slow) == len(fast.features["inputs"]) == fast.report.examples == 81
  for i, ex in enumerate(slow):
    for f in lengths:
      assert fast.features[f][i].tolist() == ex[f].tolist()
    question = ex["inputs_pretokenized"].decode()
    assert fast.features["inputs"][i].tolist() == [1] + list(vocabulary.encode(question)) + [2]
    program = ex["targets_pretokenized"].decode()
    assert fast.features["targets"][i].tolist() == list(vocabulary.encode(program)) + [2]
