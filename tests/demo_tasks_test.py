"""Tests for tasks.demo_tasks: the `pad_demo_synthetic` seqio task."""

import subprocess
import sys

import seqio

import tasks  # Importing the package registers every task.
from pad_jax.data import synthetic
from tasks import demo_tasks
from tasks import postprocessors


def test_import_tasks_registers_pad_demo_synthetic():
  fresh = subprocess.run(
      [sys.executable, "-c", "import seqio, tasks; print("
       "'pad_demo_synthetic' in seqio.TaskRegistry.names())"],
      capture_output=True, text=True, check=True)
  assert fresh.stdout.split()[-1] == "True"
  assert tasks is not None
  task = seqio.get_mixture_or_task("pad_demo_synthetic")
  assert set(task.splits) == {"train", "validation", "test"}
  assert task.num_input_examples("test") == demo_tasks.SIZES["test"]
  assert demo_tasks.register() is task  # Idempotent.


def test_test_split_iterates_fully_and_fits_the_feature_lengths():
  task = seqio.get_mixture_or_task(demo_tasks.TASK_NAME)
  dataset = task.get_dataset(demo_tasks.FEATURE_LENGTHS, split="test",
                             shuffle=False)
  examples = list(dataset.as_numpy_iterator())
  records = synthetic.generate("test", demo_tasks.SIZES["test"], seed=0)
  assert len(examples) == len(records)
  vocabulary = task.output_features["targets"].vocabulary
  for example, record in zip(examples, records):
    assert example["id"].decode() == record.id
    assert example["inputs_pretokenized"].decode() == record.question
    assert example["targets_pretokenized"].decode() == record.program
    # Nothing was cut: BOS + question + EOS, program + EOS.
    assert example["inputs"][0] == 1 and example["inputs"][-1] == 2
    assert example["targets"][-1] == 2
    assert len(example["inputs"]) < demo_tasks.FEATURE_LENGTHS["inputs"]
    assert len(example["targets"]) < demo_tasks.FEATURE_LENGTHS["targets"]
    assert vocabulary.decode(example["targets"][:-1].tolist()) == record.program
    gold = postprocessors.postprocess(
        example["targets_pretokenized"], example=example, is_target=True)
    assert gold == record.answer


def test_train_split_matches_the_generator():
  task = seqio.get_mixture_or_task(demo_tasks.TASK_NAME)
  dataset = task.get_dataset(demo_tasks.FEATURE_LENGTHS, split="train",
                             shuffle=False)
  first = next(dataset.as_numpy_iterator())
  record = synthetic.generate("train", 1, seed=0)[0]
  assert first["inputs_pretokenized"].decode() == record.question
  assert task.num_input_examples("train") == demo_tasks.SIZES["train"]
