"""Tests for the seqio tasks in tasks/: eval tasks, program tasks, postprocessor."""

import json
import random

import numpy as np
import pytest
import seqio

import tasks  # Registers every task.
from pad_jax.student import vocab as vocab_lib
from pad_jax.data import benchmarks
from pad_jax.data import programs
from pad_jax.errors import DataError
from tasks import eval_tasks
from tasks import postprocessors
from tasks import preprocessors
from tasks import program_tasks

LENGTHS = {"inputs": 128, "targets": 256}


def _examples(task_name, split, lengths=None):
  task = seqio.get_mixture_or_task(task_name)
  ds = task.get_dataset(lengths or LENGTHS, split=split, shuffle=False)
  return list(ds.as_numpy_iterator())


def test_all_eval_tasks_registered():
  for benchmark in benchmarks.BENCHMARKS:
    task = seqio.get_mixture_or_task(f"pad_eval_{benchmark}")
    assert task.splits == ("test",)
    assert task.output_features["inputs"].vocabulary.vocab_size == 32100
    assert task.postprocessor is postprocessors.postprocess
    assert task.metric_fns == [postprocessors.execution_metric]


def test_gsm8k_eval_task_yields_every_example(shared_data):
  gold = benchmarks.load("gsm8k", "test", shared_data)
  rows = _examples("pad_eval_gsm8k", "test")
  assert len(rows) == len(gold) == 1319
  vocab = vocab_lib.CodeT5Vocabulary(str(shared_data / "codet5_tokenizer"))
  for row, example in zip(rows, gold):
    ids = row["inputs"].tolist()
    assert ids[0] == 1 and ids[-1] == 2 and len(ids) <= 128
    assert row["targets"][-1] == 2
    assert row["id"].decode() == example.id
    assert row["inputs_pretokenized"].decode() == example.question
    assert float(row["answer"]) == example.answer
    assert row["targets_pretokenized"] == row["answer"]
    if len(ids) < 128:  # Not truncated: exactly what HF CodeT5 gives.
      assert ids == vocab_lib.format_input(example.question, vocab)


def test_small_eval_task_and_truncation_keeps_bos(shared_data):
  gold = benchmarks.load("addsub", "test", shared_data)
  rows = _examples("pad_eval_addsub", "test", {"inputs": 16, "targets": 8})
  assert len(rows) == len(gold) == 395
  for row in rows:
    ids = row["inputs"].tolist()
    assert len(ids) == 16 and ids[0] == 1 and ids[-1] == 2  # Trimmed tail.


def _write_dataset(path, n_questions=200, samples=3, seed=0):
  rng = random.Random(seed)
  records = []
  for q in range(n_questions):
    a, b = rng.randint(1, 99), rng.randint(1, 99)
    for s in range(samples):
      records.append(programs.ProgramRecord(
          id=f"syn-{q:04d}", question=f"Tom has {a} apples and buys {b}. "
          "How many now?",
          program=f"def solution():\n    apples = {a}\n    bought = {b}\n"
          f"    return apples + bought{' + 0' * s}\n",
          answer=float(a + b), teacher="test", prompt_variant=0, sample=s))
  programs.write_programs(path, records)
  return records


def test_program_task_splits(tmp_path):
  path = tmp_path / "programs.jsonl"
  records = _write_dataset(path)
  task = program_tasks.register_program_task("h2_test_programs", str(path))
  assert task.num_input_examples("validation") == 10 * 3  # 5% of 200 questions
  train = _examples("h2_test_programs", "train")
  validation = _examples("h2_test_programs", "validation")
  assert len(train) + len(validation) == len(records)
  train_ids = {r["id"] for r in train}
  validation_ids = {r["id"] for r in validation}
  assert len(validation_ids) == 10 and not train_ids & validation_ids
  row = validation[0]
  assert row["inputs"][0] == 1 and row["inputs"][-1] == 2
  vocab = task.output_features["targets"].vocabulary
  assert vocab.decode(row["targets"]) == row["targets_pretokenized"].decode()
  assert row["targets_pretokenized"].decode().startswith("def solution():")
  assert float(row["answer"]) == float(
      row["inputs_pretokenized"].split()[2]) + float(
          row["inputs_pretokenized"].split()[6].rstrip(b"."))

  # Deterministic, independent of row order; the seed changes the draw.
  shuffled = tmp_path / "shuffled.jsonl"
  rows = path.read_text().splitlines(keepends=True)
  random.Random(1).shuffle(rows)
  shuffled.write_text("".join(rows))
  same = program_tasks.load_split(str(shuffled), "validation")
  assert {r.id.encode() for r in same} == validation_ids
  other = program_tasks.load_split(str(path), "validation", seed=1)
  assert {r.id.encode() for r in other} != validation_ids
  assert program_tasks.load_split(str(path), "validation", 0.0) == ()


def test_register_program_task_is_idempotent(tmp_path):
  path = tmp_path / "p.jsonl"
  _write_dataset(path, n_questions=40, samples=1)
  first = program_tasks.register_program_task("h2_test_idem", str(path))
  assert program_tasks.register_program_task("h2_test_idem", path) is first
  replaced = program_tasks.register_program_task(
      "h2_test_idem", str(path), validation_fraction=0.25)
  assert replaced is not first
  assert seqio.get_mixture_or_task("h2_test_idem") is replaced
  assert replaced.num_input_examples("validation") == 10
  with pytest.raises(ValueError, match="already registered by other code"):
    program_tasks.register_program_task("pad_eval_gsm8k", str(path))
  assert seqio.get_mixture_or_task("pad_eval_gsm8k").splits == ("test",)
  with pytest.raises(ValueError, match="validation_fraction"):
    program_tasks.register_program_task("h2_test_bad", str(path),
                                        validation_fraction=1.0)


def test_program_task_bad_input_names_file_and_line(tmp_path):
  path = tmp_path / "bad.jsonl"
  _write_dataset(path, n_questions=3, samples=1)
  lines = path.read_text().splitlines()
  row = json.loads(lines[1])
  row["answer"] = "many"
  lines[1] = json.dumps(row)
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(DataError, match=r"bad.jsonl:2: field 'answer'"):
    program_tasks.register_program_task("h2_test_bad_rows", str(path))
  with pytest.raises(DataError, match="not found"):
    program_tasks.register_program_task("h2_test_missing",
                                        str(tmp_path / "missing.jsonl"))
  empty = tmp_path / "empty.jsonl"
  empty.write_text("")
  with pytest.raises(DataError, match="empty.jsonl: no program records"):
    program_tasks.register_program_task("h2_test_empty", str(empty))
  assert "h2_test_bad_rows" not in seqio.TaskRegistry.names()


def test_program_task_with_trained_vocabulary(tmp_path):
  path = tmp_path / "p.jsonl"
  records = _write_dataset(path, n_questions=30, samples=1)
  vocab_dir = vocab_lib.train_bpe_vocab(
      [r.question for r in records] + [r.program for r in records],
      str(tmp_path / "vocab"), vocab_size=400, split_digits=True)
  vocab = vocab_lib.CodeT5Vocabulary(vocab_dir, extra_ids=0)
  task = program_tasks.register_program_task("h2_test_small_vocab", str(path),
                                             vocabulary=vocab)
  assert task.output_features["inputs"].vocabulary == vocab
  for row in _examples("h2_test_small_vocab", "train"):
    assert row["inputs"][0] == 1 and row["inputs"][-1] == 2
    assert max(row["inputs"].max(), row["targets"].max()) < 400
    assert vocab.decode(row["targets"]) == row["targets_pretokenized"].decode()
  # An eval task over the same vocabulary for that student.
  eval_task = eval_tasks.register_eval_task("singleop", "h2_test_eval_small",
                                            vocabulary=vocab)
  assert eval_task.output_features["targets"].vocabulary == vocab


def test_postprocessor():
  example = {"answer": np.bytes_(b"18"), "id": b"x"}
  assert postprocessors.postprocess(b"18", example, is_target=True) == 18.0
  assert postprocessors.postprocess("2.5", None, is_target=True) == 2.5
  completion = ("Here is the program:\n```python\ndef solution():\n"
                "    return 9 * 2\n```\nThe answer is 18.")
  program = postprocessors.postprocess(completion.encode(), example)
  assert program.startswith("def solution():") and "```" not in program
  assert "answer is" not in program
  assert postprocessors.postprocess("no code here") == "no code here"
  assert preprocessors.format_number(18.0) == "18"
  assert preprocessors.format_number(2.5) == "2.5"
  assert preprocessors.format_number(-3.0) == "-3"


def test_postprocess_and_metric_through_seqio():
  task = seqio.get_mixture_or_task("pad_eval_singleop")
  rows = _examples("pad_eval_singleop", "test")[:2]
  targets = [task.postprocess_fn(r["targets_pretokenized"].decode(),
                                 example=r, is_target=True) for r in rows]
  right = f"def solution():\n    return {targets[0]!r}\n"
  predictions = [task.postprocess_fn(p, example=r, is_target=False)
                 for p, r in zip([right, "def solution():\n    return -1e9\n"],
                                 rows)]
  scores = postprocessors.execution_metric(targets, predictions)
  assert scores["accuracy"] == pytest.approx(0.5)
  assert scores["runnable_rate"] == pytest.approx(1.0)


def test_t5x_sees_one_matching_vocabulary(shared_data):
  t5x_utils = pytest.importorskip("t5x.utils")
  cfg = t5x_utils.DatasetConfig(
      mixture_or_task_name="pad_eval_gsm8k", task_feature_lengths=LENGTHS,
      split="test", batch_size=8, shuffle=False, seed=0)
  inputs_vocab, targets_vocab = t5x_utils.get_vocabulary(cfg)
  model_vocab = vocab_lib.CodeT5Vocabulary(
      str(shared_data / "codet5_tokenizer"))
  assert inputs_vocab == targets_vocab == model_vocab  # t5x's own check.
  assert inputs_vocab != vocab_lib.CodeT5Vocabulary(model_vocab.vocab_dir, 0)
