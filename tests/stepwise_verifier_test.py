"""The step verifier's seqio task, the data-builder command and the stepwise
flags of `python -m pad_jax.infer` (no model needed)."""

import json
import re

import pytest

from conftest import run_module
from pad_jax.data import synthetic
from pad_jax.errors import DataError
from tasks import verifier_tasks

ROW = {"id": "q1", "question": "Tom has 3 apples and buys 5 more. How many?",
       "answer": 8,
       "prefixes": [
           {"prefix": "def solution():\n    a = 3\n", "label": "correct"},
           {"prefix": "def solution():\n    a = 4\n", "label": "wrong"}]}


def _write(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


def test_the_task_has_one_example_per_prefix(tmp_path):
  rows = [ROW, {**ROW, "id": "q2"}, {**ROW, "id": "q3"}]
  path = _write(tmp_path / "v.jsonl", rows)
  vocabulary = synthetic.demo_vocabulary()
  task = verifier_tasks.register_verifier_task(
      "pad_step_verifier_unit", path, vocabulary, validation_fraction=0.34)
  assert task.num_input_examples("train") == 4
  assert task.num_input_examples("validation") == 2
  (example, _) = task.get_dataset({"inputs": 128, "targets": 8}, split="train",
                                  shuffle=False).take(2).as_numpy_iterator()
  assert vocabulary.decode(example["targets"].tolist()) == "correct"
  assert example["inputs_pretokenized"].decode() == (
      ROW["question"] + verifier_tasks.SEPARATOR + ROW["prefixes"][0]["prefix"])
  # The search's prefixes end with a newline id carrying indentation.
  assert verifier_tasks.verifier_input(ROW["question"], "x = 1\n   ") == (
      verifier_tasks.verifier_input(ROW["question"], "x = 1\n"))
  assert verifier_tasks.accuracy_metric(
      ["correct", "wrong", "wrong"], ["correct", "correct", "wrong"]) == {
          "accuracy": 2 / 3, "correct_recall": 1.0, "wrong_recall": 0.5}


def test_balanced_labels_repeat_the_rarer_label_in_train_only(tmp_path):
  unbalanced = {**ROW, "prefixes": ROW["prefixes"] + [
      {"prefix": "def solution():\n    a = 5\n", "label": "wrong"},
      {"prefix": "def solution():\n    a = 6\n", "label": "wrong"}]}
  rows = [unbalanced, {**unbalanced, "id": "q2"}, {**unbalanced, "id": "q3"}]
  path = _write(tmp_path / "v.jsonl", rows)
  task = verifier_tasks.register_verifier_task(
      "pad_step_verifier_balanced", path, synthetic.demo_vocabulary(),
      validation_fraction=0.34, balance_labels=True)
  # Train: 2 questions x (1 correct, 3 wrong) -> 6 correct (repeated) + 6 wrong.
  assert task.num_input_examples("train") == 12
  assert task.num_input_examples("validation") == 4  # as written
  labels = [verifier_tasks.postprocess(e["targets_pretokenized"]) for e in task.get_dataset(
      {"inputs": 128, "targets": 8}, split="train", shuffle=False).as_numpy_iterator()]
  assert labels.count("correct") == labels.count("wrong") == 6
  examples = {"ids": ["a", "b", "c"], "targets": ["wrong", "wrong", "wrong"]}
  assert verifier_tasks.balanced(examples) == examples  # one label: nothing to balance


@pytest.mark.parametrize("row, field", [
    ({k: v for k, v in ROW.items() if k != "prefixes"}, "prefixes"),
    ({**ROW, "answer": "many"}, "answer"),
    ({**ROW, "prefixes": [{"prefix": "x", "label": "maybe"}]},
     "prefixes[0].label"),
    ({**ROW, "prefixes": [{"label": "wrong"}]}, "prefixes[0]"),
])
def test_bad_rows_name_file_line_field(tmp_path, row, field):
  path = _write(tmp_path / "bad.jsonl", [ROW, row])
  with pytest.raises(DataError, match=re.escape(f"bad.jsonl:2: field '{field}'")):
    verifier_tasks.read_verifier_rows(path)


def test_builder_cli_help_and_one_line_errors(tmp_path):
  proc = run_module("pad_jax.stepwise.verifier_data", "--help")
  assert proc.returncode in (0, 1) and "--completions" in proc.stdout
  # The student as infer restores it (the pipeline's stage passes these).
  assert "--gin_search_paths" in proc.stdout and "--vocab_dir" in proc.stdout
  proc = run_module("pad_jax.infer", "--help")
  assert "stepwise_beam" in proc.stdout and "--step_candidates" in proc.stdout
  assert "--step_verifier" in proc.stdout and "--step_verifier_weight" in proc.stdout
  path = tmp_path / "q.jsonl"
  path.write_text('{"id": 1, "question": "q?", "answer": "x"}\n')
  proc = run_module("pad_jax.stepwise.verifier_data",
                    f"--checkpoint_dir={tmp_path}", f"--input={path}",
                    f"--output={tmp_path / 'out.jsonl'}")
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: {path}:1: field 'answer': missing or not a number: \"x\"")
  proc = run_module("pad_jax.stepwise.verifier_data", f"--input={path}")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == "error: --checkpoint_dir is required"
