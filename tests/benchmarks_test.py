"""Tests for pad_jax.data.benchmarks: the shared data and every error path."""

import json
import os
import pathlib
import pickle

import pytest

from pad_jax.data import benchmarks
from pad_jax.errors import DataError

EXPECTED_COUNTS = {
    ("gsm8k", "train"): 7473,
    ("gsm8k", "test"): 1319,
    ("svamp", "test"): 1000,
    ("asdiv", "test"): 2096,
    ("multiarith", "test"): 600,
    ("addsub", "test"): 395,
    ("singleeq", "test"): 508,
    ("singleop", "test"): 562,
    ("gsmhard", "test"): 1319,
}


# ----------------------------------------------------------------------------
# The real shared data.
# ----------------------------------------------------------------------------


def test_benchmarks_table_matches_expected_splits():
  assert set(EXPECTED_COUNTS) == {
      (name, split) for name, splits in benchmarks.BENCHMARKS.items()
      for split in splits}


@pytest.mark.parametrize("benchmark,split", sorted(EXPECTED_COUNTS))
def test_exact_counts_and_stable_unique_ids(shared_data, benchmark, split):
  examples = benchmarks.load(benchmark, split, data_dir=shared_data)
  assert len(examples) == EXPECTED_COUNTS[(benchmark, split)]
  assert [e.id for e in examples] == [
      f"{benchmark}-{split}-{i:05d}" for i in range(len(examples))]
  assert all(isinstance(e.answer, float) for e in examples)
  assert all(e.question and e.question == e.question.strip() for e in examples)
  # A second load (cached or not) gives equal records.
  assert benchmarks.load(benchmark, split, data_dir=shared_data) == examples


def test_ids_unique_across_all_benchmarks(shared_data):
  ids = [e.id for name, splits in benchmarks.BENCHMARKS.items()
         for split in splits for e in benchmarks.load(name, split, shared_data)]
  assert len(ids) == len(set(ids)) == sum(EXPECTED_COUNTS.values())


def test_stats(shared_data):
  counts = benchmarks.stats(shared_data)
  assert list(counts) == list(benchmarks.BENCHMARKS)
  assert {(b, s): n for b, splits in counts.items()
          for s, n in splits.items()} == EXPECTED_COUNTS


def test_gsm8k_first_test_example_exact(shared_data):
  example = benchmarks.load("gsm8k", "test", shared_data)[0]
  assert example.id == "gsm8k-test-00000"
  assert example.question.startswith("Janet\u2019s ducks lay 16 eggs per day.")
  assert example.answer == 18.0
  assert example.rationale == (
      "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
      "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer\u2019s market.")
  assert example.source == "gsm8k/test.jsonl:1"
  assert example.reference_program is None


def test_gsm8k_rationales_keep_calculator_marks(shared_data):
  for split in ("train", "test"):
    examples = benchmarks.load("gsm8k", split, shared_data)
    assert all(e.rationale and "####" not in e.rationale for e in examples)
    with_marks = sum("<<" in e.rationale and ">>" in e.rationale
                     for e in examples)
    assert with_marks > 0.9 * len(examples)


def test_gsm8k_answers_with_commas(shared_data):
  path = shared_data / "gsm8k" / "train.jsonl"
  raw = [json.loads(line)["answer"].split("####")[1].strip()
         for line in path.read_text(encoding="utf-8").splitlines()]
  examples = benchmarks.load("gsm8k", "train", shared_data)
  with_commas = [(text, e) for text, e in zip(raw, examples) if "," in text]
  assert with_commas, "expected GSM8K answers written like 1,000"
  for text, example in with_commas:
    assert example.answer == float(text.replace(",", ""))


def test_source_points_at_the_record(shared_data):
  for benchmark in ("gsm8k", "asdiv", "gsmhard"):
    example = benchmarks.load(benchmark, "test", shared_data)[123]
    relpath, line = example.source.rsplit(":", 1)
    row = json.loads((shared_data / relpath).read_text(
        encoding="utf-8").splitlines()[int(line) - 1])
    assert example.question == row.get("question", row.get("input")).strip()


def test_gsm8k_test_agrees_with_pal_copy(shared_data):
  # Two independent upstream copies of the GSM8K test answers must agree.
  pal = [json.loads(line)["target"] for line in
         (shared_data / "pal" / "gsm.jsonl").read_text().splitlines()]
  gsm8k = benchmarks.load("gsm8k", "test", shared_data)
  assert [e.answer for e in gsm8k] == [float(t) for t in pal]


def test_svamp_question_is_body_space_question(shared_data):
  raw = json.loads((shared_data / "svamp" / "SVAMP.json").read_text())
  examples = benchmarks.load("svamp", "test", shared_data)
  assert examples[0].question == (
      "Each pack of dvds costs 76 dollars. If there is a discount of 25 "
      "dollars on each pack How much do you have to pay to buy each pack?")
  for row, example in zip(raw, examples):
    assert example.question == f"{row['Body'].strip()} {row['Question'].strip()}"
    assert example.answer == row["Answer"]
    assert example.source == f"svamp/SVAMP.json#{row['ID']}"
  pal = [json.loads(line)["target"] for line in
         (shared_data / "pal" / "svamp.jsonl").read_text().splitlines()]
  assert [e.answer for e in examples] == pal


def test_gsmhard_keeps_reference_programs(shared_data):
  from pad_jax.data import programs  # pylint: disable=g-import-not-at-top
  examples = benchmarks.load("gsmhard", "test", shared_data)
  assert all(e.reference_program for e in examples)
  assert all(programs.check_program(e.reference_program) is None
             for e in examples)
  # Big numbers stay exact enough to compare with answers_match.
  assert max(abs(e.answer) for e in examples) > 1e9
  assert all(e.reference_program is None
             for e in benchmarks.load("asdiv", "test", shared_data))


def test_example_is_frozen_and_serialisable(shared_data):
  example = benchmarks.load("singleop", "test", shared_data)[0]
  with pytest.raises(AttributeError):
    example.answer = 1.0  # pytype: disable=not-writable
  row = example.to_json()
  assert set(row) == {"id", "question", "answer", "source"}
  assert json.loads(json.dumps(row)) == row


# ----------------------------------------------------------------------------
# Data directory resolution.
# ----------------------------------------------------------------------------


def test_default_data_dir_precedence(monkeypatch, tmp_path, repo_root):
  monkeypatch.delenv(benchmarks.DATA_DIR_ENV, raising=False)
  assert benchmarks.default_data_dir() == repo_root.parent / "shared" / "data"
  monkeypatch.setenv(benchmarks.DATA_DIR_ENV, str(tmp_path / "env"))
  assert benchmarks.default_data_dir() == tmp_path / "env"
  assert benchmarks.default_data_dir(tmp_path / "arg") == tmp_path / "arg"
  assert benchmarks.data_file("svamp", data_dir=tmp_path) == (
      tmp_path / "svamp" / "SVAMP.json")


def test_env_var_is_used_by_load(monkeypatch, tmp_path):
  _write(tmp_path / "pal" / "mawpssingleop.jsonl",
         '{"input": "1 + 1?", "target": 2}\n')
  monkeypatch.setenv(benchmarks.DATA_DIR_ENV, str(tmp_path))
  (example,) = benchmarks.load("singleop")
  assert (example.id, example.answer) == ("singleop-test-00000", 2.0)


def test_missing_data_dir(tmp_path):
  missing = tmp_path / "nowhere"
  with pytest.raises(DataError) as e:
    benchmarks.load("gsm8k", "test", missing)
  assert e.value.path == str(missing)
  assert str(missing) in str(e.value)
  assert "--data_dir" in str(e.value) and "PAD_DATA_DIR" in str(e.value)


def test_missing_file(tmp_path):
  with pytest.raises(DataError) as e:
    benchmarks.load("asdiv", "test", tmp_path)
  assert e.value.path == str(tmp_path / "pal" / "asdiv.jsonl")
  assert "PAD_DATA_DIR" in str(e.value)


@pytest.mark.parametrize("benchmark,split", [("nope", "test"),
                                             ("gsm8k", "dev"),
                                             ("svamp", "train")])
def test_unknown_benchmark_or_split(benchmark, split, shared_data):
  with pytest.raises(ValueError, match="unknown benchmark|has no split"):
    benchmarks.load(benchmark, split, shared_data)


def test_changed_file_is_reread(tmp_path):
  path = tmp_path / "pal" / "mawpsaddsub.jsonl"
  _write(path, '{"input": "q", "target": 1}\n')
  assert len(benchmarks.load("addsub", "test", tmp_path)) == 1
  _write(path, '{"input": "q", "target": 1}\n{"input": "r", "target": 2}\n')
  os.utime(path, ns=(1, 1))  # Even with an unchanged-looking timestamp.
  assert [e.answer for e in benchmarks.load("addsub", "test", tmp_path)] == [
      1.0, 2.0]


def test_unicode_line_separators_inside_strings(tmp_path):
  # Raw U+2028, U+0085 and form feeds inside JSON strings are not line breaks.
  question = "Tom has 3\u2028apples\x85and\x0c2 pears. How many?"
  path = tmp_path / "pal" / "mawpssingleop.jsonl"
  _write(path, json.dumps({"input": question, "target": 5},
                          ensure_ascii=False) + "\n" + _PAL_OK + "\n")
  examples = benchmarks.load("singleop", "test", tmp_path)
  assert [e.question for e in examples] == [question, "q?"]
  assert examples[1].source == "pal/mawpssingleop.jsonl:2"


# ----------------------------------------------------------------------------
# Malformed input: every path raises DataError with file, line and field.
# ----------------------------------------------------------------------------

_GSM_OK = '{"question": "q?", "answer": "a <<1+1=2>>2\\n#### 2"}'
_PAL_OK = '{"input": "q?", "target": 2}'
_HARD_OK = '{"input": "q?", "target": 2, "code": "def solution():\\n  return 2"}'

GSM8K_ERRORS = [
    # (second line, field, message regex)
    ('{"question": "q?", "answer": "#### 2"', None, "invalid JSON"),
    ("not json at all", None, "invalid JSON"),
    ('["question", "answer"]', None, "expected a JSON object, got a JSON array"),
    ("42", None, "got a JSON number"),
    ('{"answer": "x\\n#### 2"}', "question", "missing field"),
    ('{"question": "q?"}', "answer", "missing field"),
    ('{"question": 7, "answer": "#### 2"}', "question", "expected a string"),
    ('{"question": "   ", "answer": "#### 2"}', "question", "empty string"),
    ('{"question": "q?", "answer": "it is 2"}', "answer", "exactly one '#### N'"),
    ('{"question": "q?", "answer": "#### 2\\n#### 3"}', "answer", "exactly one"),
    ('{"question": "q?", "answer": "x\\n#### two"}', "answer", "not a number"),
    ('{"question": "q?", "answer": "x\\n#### "}', "answer", "not a number"),
    ('{"question": "q?", "answer": ["#### 2"]}', "answer", "expected a string"),
]


@pytest.mark.parametrize("bad_line,field,message", GSM8K_ERRORS)
def test_gsm8k_malformed(tmp_path, bad_line, field, message):
  path = tmp_path / "gsm8k" / "test.jsonl"
  _write(path, f"{_GSM_OK}\n{bad_line}\n{_GSM_OK}\n")
  _assert_error(lambda: benchmarks.load("gsm8k", "test", tmp_path),
                path, 2, field, message)


PAL_ERRORS = [
    ('{"target": 2}', "input", "missing field"),
    ('{"input": "q?"}', "target", "missing field"),
    ('{"input": "q?", "target": "12"}', "target", "expected a finite number"),
    ('{"input": "q?", "target": "twelve"}', "target", "expected a finite number"),
    ('{"input": "q?", "target": null}', "target", "expected a finite number"),
    ('{"input": "q?", "target": true}', "target", "expected a finite number"),
    ('{"input": "q?", "target": NaN}', "target", "expected a finite number"),
    ('{"input": "q?", "target": Infinity}', "target", "expected a finite number"),
    ('{"input": "q?", "target": [2]}', "target", "expected a finite number"),
    ('{"input": "q?", "target": 2', None, "invalid JSON"),
]


@pytest.mark.parametrize("bad_line,field,message", PAL_ERRORS)
def test_pal_malformed(tmp_path, bad_line, field, message):
  path = tmp_path / "pal" / "asdiv.jsonl"
  _write(path, f"{_PAL_OK}\n\n{bad_line}\n")  # A blank line does not shift lines.
  _assert_error(lambda: benchmarks.load("asdiv", "test", tmp_path),
                path, 3, field, message)


@pytest.mark.parametrize("bad_line,field,message", [
    (_PAL_OK, "code", "missing field"),
    ('{"input": "q?", "target": 2, "code": 5}', "code", "expected a string"),
    ('{"input": "q?", "target": 2, "code": ""}', "code", "empty string"),
])
def test_gsmhard_malformed(tmp_path, bad_line, field, message):
  path = tmp_path / "pal" / "gsmhardv2.jsonl"
  _write(path, f"{_HARD_OK}\n{bad_line}\n")
  _assert_error(lambda: benchmarks.load("gsmhard", "test", tmp_path),
                path, 2, field, message)


def test_json_array_where_jsonl_expected(tmp_path):
  path = tmp_path / "pal" / "mawpsmultiarith.jsonl"
  _write(path, json.dumps([{"input": "q?", "target": 1}] * 2, indent=2))
  _assert_error(lambda: benchmarks.load("multiarith", "test", tmp_path),
                path, 1, None, "looks like a JSON array; expected JSONL")


def test_json_array_after_blank_lines(tmp_path):
  path = tmp_path / "pal" / "mawpsmultiarith.jsonl"
  _write(path, "\n\n" + json.dumps([{"input": "q?", "target": 1}], indent=1))
  _assert_error(lambda: benchmarks.load("multiarith", "test", tmp_path),
                path, 3, None, "looks like a JSON array")


def test_utf8_bom_is_accepted(tmp_path):
  path = tmp_path / "pal" / "mawpsaddsub.jsonl"
  path.parent.mkdir(parents=True)
  path.write_bytes(b"\xef\xbb\xbf" + _PAL_OK.encode() + b"\n")
  (example,) = benchmarks.load("addsub", "test", tmp_path)
  assert example.question == "q?"


def test_pretty_printed_object_where_jsonl_expected(tmp_path):
  path = tmp_path / "pal" / "mawpssingleeq.jsonl"
  _write(path, json.dumps({"input": "q?", "target": 1}, indent=2))
  _assert_error(lambda: benchmarks.load("singleeq", "test", tmp_path),
                path, 1, None, "invalid JSON")


def test_not_utf8(tmp_path):
  path = tmp_path / "gsm8k" / "train.jsonl"
  path.parent.mkdir(parents=True)
  path.write_bytes(_GSM_OK.encode() + b"\n" + b"\xff\xfe\x00garbage\n")
  _assert_error(lambda: benchmarks.load("gsm8k", "train", tmp_path),
                path, 2, None, "not UTF-8")


def _svamp_row(**overrides):
  row = {"ID": "chal-1", "Body": "Tom has 3 apples.",
         "Question": "How many apples?", "Equation": "3", "Answer": 3.0,
         "Type": "Addition"}
  row.update(overrides)
  return {k: v for k, v in row.items() if v is not _DROP}


_DROP = object()


def test_svamp_small_file_reads(tmp_path):
  path = tmp_path / "svamp" / "SVAMP.json"
  _write(path, json.dumps([_svamp_row(), _svamp_row(ID="chal-2", Answer=4)],
                          indent=4))
  examples = benchmarks.load("svamp", "test", tmp_path)
  assert [(e.id, e.question, e.answer, e.source) for e in examples] == [
      ("svamp-test-00000", "Tom has 3 apples. How many apples?", 3.0,
       "svamp/SVAMP.json#chal-1"),
      ("svamp-test-00001", "Tom has 3 apples. How many apples?", 4.0,
       "svamp/SVAMP.json#chal-2")]
  _write(path, "[]")
  assert not benchmarks.load("svamp", "test", tmp_path)


@pytest.mark.parametrize("override,field,message", [
    ({"Body": _DROP}, "Body", "missing field"),
    ({"Question": _DROP}, "Question", "missing field"),
    ({"Question": None}, "Question", "expected a string"),
    ({"Answer": _DROP}, "Answer", "missing field"),
    ({"Answer": "3"}, "Answer", "expected a finite number"),
    ({"ID": _DROP}, "ID", "missing field"),
    ({"ID": None}, "ID", "expected a string"),
])
def test_svamp_malformed_field(tmp_path, override, field, message):
  path = tmp_path / "svamp" / "SVAMP.json"
  # indent=4 (as in the real file): the second object opens on line 10.
  _write(path, json.dumps([_svamp_row(), _svamp_row(**override)], indent=4))
  _assert_error(lambda: benchmarks.load("svamp", "test", tmp_path),
                path, 10, field, message)


@pytest.mark.parametrize("text,line,message", [
    ('{"ID": "chal-1"}\n{"ID": "chal-2"}\n', 1, "expected a JSON array"),
    ("", 1, "expected a JSON array"),
    ('[\n  {"ID": "a", "Body": "b", "Question": "q", "Answer": 1}\n  "x"\n]',
     3, "expected ',' or ']'"),
    ('[\n  {"ID": "a", "Body": "b",\n   "Question": "q" "Answer": 1}\n]', 3,
     "invalid JSON"),
    ('[\n  3\n]', 2, "expected a JSON object in the array"),
    ('[\n  {"ID": "a", "Body": "b", "Question": "q", "Answer": 1}\n]\n[]', 4,
     "unexpected data after the JSON array"),
    ('[\n  {"ID": "a", "Body": "b", "Question": "q", "Answer": 1},\n', 3,
     "invalid JSON"),
])
def test_svamp_wrong_shape(tmp_path, text, line, message):
  path = tmp_path / "svamp" / "SVAMP.json"
  _write(path, text)
  _assert_error(lambda: benchmarks.load("svamp", "test", tmp_path),
                path, line, None, message)


def test_data_error_format_and_pickle():
  error = DataError("/d/x.jsonl", 3, "answer", "not a number")
  assert str(error) == "/d/x.jsonl:3: field 'answer': not a number"
  assert str(DataError("/d/x.jsonl", 3, None, "bad")) == "/d/x.jsonl:3: bad"
  assert str(DataError(pathlib.Path("/d"), None, None, "gone")) == "/d: gone"
  assert isinstance(error, ValueError)
  copy = pickle.loads(pickle.dumps(error))
  assert (copy.path, copy.line, copy.field, copy.message, str(copy)) == (
      error.path, error.line, error.field, error.message, str(error))


def _write(path: pathlib.Path, text: str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text, encoding="utf-8")


def _assert_error(fn, path, line, field, message):
  with pytest.raises(DataError, match=message) as e:
    fn()
  assert (e.value.path, e.value.line, e.value.field) == (str(path), line, field)
  location = f"{path}:{line}: " + ("" if field is None else f"field '{field}': ")
  assert str(e.value).startswith(location), str(e.value)
