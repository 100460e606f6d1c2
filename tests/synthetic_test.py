"""Tests for pad_jax.data.synthetic: determinism, split disjointness, programs."""

import ast
import collections
import json

import pytest

from pad_jax.data import programs
from pad_jax.data import synthetic
from pad_jax.execution import Executor


def _instances(records):
  return {synthetic.instance_key(r.extra["template"], r.extra["numbers"])
          for r in records}


def test_generate_is_deterministic_given_seed():
  first = synthetic.generate("train", 300, seed=3)
  again = synthetic.generate("train", 300, seed=3)
  other = synthetic.generate("train", 300, seed=4)
  assert first == again
  assert [r.question for r in first] != [r.question for r in other]
  # A prefix of a longer request is the shorter request.
  assert synthetic.generate("train", 100, seed=3) == first[:100]


def test_splits_never_share_a_template_instance_across_seeds():
  sizes = {"train": 2000, "validation": 400, "test": 400}
  by_split = {
      split: _instances(synthetic.generate(split, n, seed=0))
      | _instances(synthetic.generate(split, n, seed=1))
      for split, n in sizes.items()
  }
  assert not by_split["train"] & by_split["validation"]
  assert not by_split["train"] & by_split["test"]
  assert not by_split["validation"] & by_split["test"]
  for split, keys in by_split.items():
    for key in keys:
      template, numbers = key.split(":")
      assert synthetic.split_of(
          template, [int(x) for x in numbers.split(",")]) == split


def test_instances_are_distinct_within_a_call_and_templates_balanced():
  records = synthetic.generate("test", 320)
  assert len(_instances(records)) == 320
  counts = collections.Counter(r.extra["template"] for r in records)
  assert set(counts) == set(synthetic.TEMPLATES_BY_NAME)
  assert set(counts.values()) == {320 // len(synthetic.TEMPLATES)}
  assert {r.extra["steps"] for r in records} == {1, 2, 3, 4}


def test_records_follow_the_program_dataset_format_and_style():
  records = synthetic.generate("validation", len(synthetic.TEMPLATES) * 3)
  assert len({r.id for r in records}) == len(records)
  for record in records:
    assert record.teacher == "synthetic"
    assert record.prompt_variant == record.extra["template"]
    assert programs.check_program(record.program) is None
    tree = ast.parse(record.program)
    (function,) = tree.body
    assert function.name == "solution"
    docstring = ast.get_docstring(function)
    assert docstring and record.question.endswith(docstring)
    lines = record.program.splitlines()
    assert lines[-2:] == ["    result = " + lines[-3].split(" = ")[0].strip(),
                          "    return result"]
    # Every number of the question is bound to a named variable.
    for number in record.extra["numbers"]:
      assert str(number) in record.question
      assert f" = {number}\n" in record.program
    # One commented computation step per line.
    steps = record.extra["steps"]
    assert sum(line.startswith("    # ") for line in lines) == steps


def test_programs_execute_to_their_answers_in_the_sandbox():
  records = synthetic.generate("test", 160, seed=7)
  with Executor(workers=2) as executor:
    results = executor.run([r.program for r in records])
  for record, result in zip(records, results):
    assert result.status == "ok", (record.id, result)
    assert result.value == pytest.approx(record.answer), record.id
    assert record.answer > 0


def test_write_splits_roundtrips_through_the_program_reader(tmp_path):
  paths = synthetic.write_splits(str(tmp_path), {"train": 40, "test": 16},
                                 seed=2)
  assert sorted(paths) == ["test", "train"]
  assert programs.read_programs(paths["test"]) == synthetic.generate(
      "test", 16, seed=2)
  row = json.loads(open(paths["train"]).readline())
  assert row["teacher"] == "synthetic" and row["template"]


def test_bad_arguments_raise_clear_errors():
  with pytest.raises(ValueError, match="unknown split"):
    synthetic.generate("dev", 3)
  with pytest.raises(ValueError, match="unknown templates"):
    synthetic.generate("train", 3, templates=["no_such_template"])
  only_add = synthetic.generate("train", 5, templates=["add"])
  assert {r.extra["template"] for r in only_add} == {"add"}


def test_demo_vocabulary_splits_digits_and_roundtrips():
  vocabulary = synthetic.demo_vocabulary()
  assert vocabulary.vocab_size % 8 == 0
  record = synthetic.generate("test", 16)[-1]
  for text in (record.question, record.program):
    assert vocabulary.decode(vocabulary.encode(text)) == text
  pieces = [vocabulary.decode([i]) for i in vocabulary.encode("cost 1234")]
  assert pieces[-4:] == ["1", "2", "3", "4"]
