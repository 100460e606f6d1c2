"""Tests for pad_jax.data.programs: the program-dataset JSONL format."""

import json
import os
import pathlib

import pytest

from pad_jax.data import benchmarks
from pad_jax.data import programs
from pad_jax.errors import DataError
from pad_jax.data.programs import ProgramRecord

PROGRAM = "def solution():\n    apples = 3\n    return apples * 2\n"


def _record(**overrides) -> ProgramRecord:
  fields = dict(id="gsm8k-train-00042", question="Tom has 3 apples...",
                program=PROGRAM, answer=6, teacher="gpt-3.5-turbo",
                prompt_variant=0, sample=0)
  fields.update(overrides)
  return ProgramRecord(**fields)


def _row(**overrides):
  row = _record().to_json()
  for key, value in overrides.items():
    if value is _DROP:
      del row[key]
    else:
      row[key] = value
  return row


_DROP = object()


# ----------------------------------------------------------------------------
# Round trips.
# ----------------------------------------------------------------------------


def test_round_trip_with_extra_keys(tmp_path):
  records = [
      _record(),
      _record(sample=1, prompt_variant="pal-8shot", answer=2.5,
              extra={"verified": True, "exec": {"value": 2.5, "ms": 3},
                     "note": "caf\u00e9 \u2019"}),
      _record(id="svamp-test-00001",
              question="Q\twith\ttabs\nand lines\u2028and\x85separators",
              program="import math\n\ndef solution(x=2, *, y=3):\n"
                      "\treturn math.sqrt(x * y)\n",
              answer=-1e12, teacher="gold", sample=7),
  ]
  path = tmp_path / "sub" / "programs.jsonl"
  assert programs.write_programs(path, records) == 3
  assert programs.read_programs(path) == records
  rows = [json.loads(line) for line in path.read_text().split("\n") if line]
  assert list(rows[1]) == list(programs.REQUIRED_FIELDS) + [
      "verified", "exec", "note"]
  assert rows[1]["exec"] == {"value": 2.5, "ms": 3}
  # Written twice, the bytes are the same (deterministic output).
  first = path.read_bytes()
  programs.write_programs(path, programs.read_programs(path))
  assert path.read_bytes() == first


def test_answers_are_floats():
  assert _record(answer=6).answer == 6.0
  assert isinstance(_record(answer=6).answer, float)


def test_round_trip_of_real_programs(tmp_path, shared_data):
  # 1319 real GSM-Hard reference programs with their questions and answers.
  records = [
      ProgramRecord(id=e.id, question=e.question, program=e.reference_program,
                    answer=e.answer, teacher="pal-reference", prompt_variant=0,
                    sample=0, extra={"source": e.source})
      for e in benchmarks.load("gsmhard", "test", shared_data)]
  path = tmp_path / "gsmhard_programs.jsonl"
  programs.write_programs(path, records)
  assert programs.read_programs(path) == records


def test_write_is_atomic_on_bad_record(tmp_path):
  path = tmp_path / "p.jsonl"
  programs.write_programs(path, [_record()])
  before = path.read_bytes()
  with pytest.raises(DataError) as e:
    programs.write_programs(path, [_record(), _record(program="x = 1")])
  assert (e.value.path, e.value.line, e.value.field) == (str(path), 2,
                                                          "program")
  assert path.read_bytes() == before
  assert [p.name for p in tmp_path.iterdir()] == ["p.jsonl"]  # No temp files.


@pytest.mark.parametrize("record,field,message", [
    (_record(extra={"answer": 1}), "answer", "repeats a required field"),
    (_record(extra={"blob": object()}), None, "not JSON-serialisable"),
    (_record(answer=float("nan")), "answer", "finite number"),
    (_record(answer="6"), "answer", "finite number"),
    (_record(sample=-1), "sample", "integer >= 0"),
    (_record(teacher=""), "teacher", "empty string"),
])
def test_write_rejects_invalid_records(tmp_path, record, field, message):
  path = tmp_path / "p.jsonl"
  with pytest.raises(DataError, match=message) as e:
    programs.write_programs(path, [record])
  assert (e.value.line, e.value.field) == (1, field)
  assert not path.exists()
  with pytest.raises(DataError, match=message):
    with programs.ProgramWriter(path) as writer:
      writer.write(record)
  assert path.read_text() == ""


def test_write_rejects_non_records(tmp_path):
  with pytest.raises(TypeError, match="ProgramRecord"):
    programs.write_programs(tmp_path / "p.jsonl", [_record().to_json()])


# ----------------------------------------------------------------------------
# ProgramWriter: append, durability, resumption.
# ----------------------------------------------------------------------------


def test_writer_appends_and_syncs_every_row(tmp_path, monkeypatch):
  synced = []
  real_fsync = os.fsync
  monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd),
                                               real_fsync(fd)))
  path = tmp_path / "runs" / "p.jsonl"
  with programs.ProgramWriter(path) as writer:
    writer.write(_record(sample=0))
    assert len(synced) == 1
    # Durable as soon as write() returns: another reader sees the row.
    assert len(programs.read_programs(path)) == 1
    writer.write_many([_record(sample=1), _record(sample=2)])
    assert len(synced) == 3 and writer.rows_written == 3
  with programs.ProgramWriter(path) as writer:  # Appends, never truncates.
    writer.write(_record(sample=3))
  assert [r.sample for r in programs.read_programs(path)] == [0, 1, 2, 3]


def test_writer_sync_every_batches(tmp_path, monkeypatch):
  synced = []
  real_fsync = os.fsync
  monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd),
                                               real_fsync(fd)))
  path = tmp_path / "p.jsonl"
  with programs.ProgramWriter(path, sync_every=4) as writer:
    writer.write_many(_record(sample=i) for i in range(10))
    assert len(synced) == 2  # After rows 4 and 8.
  assert len(synced) == 3  # close() syncs the last two.
  assert len(programs.read_programs(path)) == 10
  with pytest.raises(ValueError, match="sync_every"):
    programs.ProgramWriter(path, sync_every=0)


def test_writer_closed(tmp_path):
  writer = programs.ProgramWriter(tmp_path / "p.jsonl")
  writer.close()
  writer.close()  # Idempotent.
  with pytest.raises(ValueError, match="closed"):
    writer.write(_record())


def test_torn_tail_read_and_repair(tmp_path):
  path = tmp_path / "p.jsonl"
  programs.write_programs(path, [_record(sample=0), _record(sample=1)])
  torn = json.dumps(_record(sample=2).to_json())[:57]
  with open(path, "a", encoding="utf-8") as f:
    f.write(torn)
  with pytest.raises(DataError, match="torn last line") as e:
    programs.read_programs(path)
  assert (e.value.line, e.value.field) == (3, None)
  assert "resumed job drops it" in str(e.value)
  assert [r.sample for r in programs.read_programs(
      path, allow_torn_tail=True)] == [0, 1]
  # A resumed writer cuts the torn line off before appending.
  with programs.ProgramWriter(path) as writer:
    assert writer.repaired_bytes == len(torn)
    writer.write(_record(sample=2))
  assert [r.sample for r in programs.read_programs(path)] == [0, 1, 2]


def test_torn_tail_inside_a_multibyte_character(tmp_path):
  path = tmp_path / "p.jsonl"
  programs.write_programs(path, [_record()])
  line = json.dumps(_record(question="caf\u00e9 \u2019 ok").to_json(),
                    ensure_ascii=False).encode()
  cut = line.index("\u2019".encode()) + 1  # Inside the 3-byte character.
  with open(path, "ab") as f:
    f.write(line[:cut])
  with pytest.raises(DataError, match="torn last line") as e:
    programs.read_programs(path)
  assert e.value.line == 2
  assert len(programs.read_programs(path, allow_torn_tail=True)) == 1
  with programs.ProgramWriter(path) as writer:
    assert writer.repaired_bytes == cut
  assert len(programs.read_programs(path)) == 1


def test_complete_last_line_with_bad_bytes_is_not_torn(tmp_path):
  path = tmp_path / "p.jsonl"
  line = json.dumps(_row(question="caf\u00e9"), ensure_ascii=False).encode()
  path.write_bytes(line + b"\n" + line.replace("\u00e9".encode(), b"\xe9"))
  for allow in (False, True):
    with pytest.raises(DataError, match="not UTF-8") as e:
      programs.read_programs(path, allow_torn_tail=allow)
    assert e.value.line == 2


def test_complete_last_line_without_newline(tmp_path):
  path = tmp_path / "p.jsonl"
  path.write_text(json.dumps(_row()) + "\n" + json.dumps(_row(sample=1)))
  assert len(programs.read_programs(path)) == 2  # Not torn: it parses.
  with programs.ProgramWriter(path) as writer:
    assert writer.repaired_bytes == 0
    writer.write(_record(sample=2))
  assert [r.sample for r in programs.read_programs(path)] == [0, 1, 2]


def test_torn_line_in_the_middle_is_always_an_error(tmp_path):
  path = tmp_path / "p.jsonl"
  path.write_text(json.dumps(_row()) + "\n" + json.dumps(_row())[:30] + "\n" +
                  json.dumps(_row()) + "\n")
  for allow in (False, True):
    with pytest.raises(DataError, match="invalid JSON") as e:
      programs.read_programs(path, allow_torn_tail=allow)
    assert e.value.line == 2


def test_writer_error_names_the_row_it_would_have(tmp_path):
  path = tmp_path / "p.jsonl"
  programs.write_programs(path, [_record(), _record(sample=1)])
  with programs.ProgramWriter(path) as writer:
    writer.write(_record(sample=2))
    with pytest.raises(DataError) as e:
      writer.write(_record(program="def solve():\n  return 1\n"))
  assert (e.value.line, e.value.field) == (4, "program")
  assert len(programs.read_programs(path)) == 3


# ----------------------------------------------------------------------------
# Reading: every malformed-input path.
# ----------------------------------------------------------------------------

READ_ERRORS = [
    # (row or raw line, field, message regex)
    ("{not json", None, "invalid JSON"),
    ('["id", "question"]', None, "expected a JSON object, got a JSON array"),
    ('"just a string"', None, "got a JSON string"),
] + [
    (_row(**{field: _DROP}), field, "missing field")
    for field in programs.REQUIRED_FIELDS
] + [
    (_row(id=""), "id", "empty string"),
    (_row(id=42), "id", "expected a string"),
    (_row(question=None), "question", "expected a string"),
    (_row(teacher=["gpt"]), "teacher", "expected a string"),
    (_row(answer="six"), "answer", "expected a finite number"),
    (_row(answer="6"), "answer", "expected a finite number"),
    (_row(answer=None), "answer", "expected a finite number"),
    (_row(answer=True), "answer", "expected a finite number"),
    ('{"id": "a", "question": "q", "program": "def solution():\\n  return 1",'
     ' "answer": NaN, "teacher": "t", "prompt_variant": 0, "sample": 0}',
     "answer", "expected a finite number"),
    (_row(program=""), "program", "empty string"),
    (_row(program=7), "program", "expected a string"),
    (_row(program="x = 6\nprint(x)\n"), "program",
     "does not define a top-level function solution"),
    (_row(program="def solution(:\n  return 1\n"), "program",
     r"not valid Python: .*\(program line 1\)"),
    (_row(program="def solution():\nreturn 1\n"), "program", "not valid Python"),
    (_row(program="def solution(a, b=1):\n  return a\n"), "program",
     "callable with no arguments"),
    (_row(program="def solution(*, k):\n  return k\n"), "program",
     "callable with no arguments"),
    (_row(program="async def solution():\n  return 1\n"), "program",
     "not async"),
    (_row(program="class A:\n  def solution(self):\n    return 1\n"),
     "program", "does not define a top-level function solution"),
    (_row(program="solution = lambda: 1\n"), "program",
     "does not define a top-level function solution"),
    (_row(program="def solution():\n  return 1\x00\n"), "program",
     "not valid Python"),
    (_row(prompt_variant=1.5), "prompt_variant", "integer or a string"),
    (_row(prompt_variant=True), "prompt_variant", "integer or a string"),
    (_row(prompt_variant=None), "prompt_variant", "integer or a string"),
    (_row(sample=-1), "sample", "integer >= 0"),
    (_row(sample="0"), "sample", "integer >= 0"),
    (_row(sample=1.0), "sample", "integer >= 0"),
    (_row(sample=False), "sample", "integer >= 0"),
]


@pytest.mark.parametrize("bad,field,message", READ_ERRORS)
def test_read_malformed(tmp_path, bad, field, message):
  path = tmp_path / "p.jsonl"
  bad_line = bad if isinstance(bad, str) else json.dumps(bad)
  path.write_text(f"{json.dumps(_row())}\n\n{bad_line}\n{json.dumps(_row())}\n",
                  encoding="utf-8")
  with pytest.raises(DataError, match=message) as e:
    programs.read_programs(path)
  assert (e.value.path, e.value.line, e.value.field) == (str(path), 3, field)
  location = f"{path}:3: " + ("" if field is None else f"field '{field}': ")
  assert str(e.value).startswith(location)


def test_read_missing_file(tmp_path):
  with pytest.raises(DataError, match="not found") as e:
    programs.read_programs(tmp_path / "nope.jsonl")
  assert e.value.path == str(tmp_path / "nope.jsonl")
  with pytest.raises(DataError, match="is a directory"):
    programs.read_programs(tmp_path)


def test_read_wrong_file_shape(tmp_path):
  path = tmp_path / "p.jsonl"
  path.write_text(json.dumps([_row(), _row()], indent=2))
  with pytest.raises(DataError, match="looks like a JSON array") as e:
    programs.read_programs(path)
  assert e.value.line == 1
  path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
  with pytest.raises(DataError, match="not UTF-8"):
    programs.read_programs(path)


def test_read_empty_file(tmp_path):
  path = tmp_path / "p.jsonl"
  path.write_text("")
  assert not programs.read_programs(path)


@pytest.mark.parametrize("program,ok", [
    (PROGRAM, True),
    ("def solution():\n    return 1\n\n\ndef solution():\n    return 2\n", True),
    ("import math\n\ndef helper(x):\n  return x\n\ndef solution(n=3):\n"
     "  return helper(n)\n", True),
    ("def solution(*args, **kwargs):\n  return 1\n", True),
    ("def Solution():\n  return 1\n", False),
    ("if True:\n  def solution():\n    return 1\n", False),
    ("", False),
])
def test_check_program(program, ok):
  assert (programs.check_program(program) is None) == ok


def test_path_objects_and_strings(tmp_path):
  path = tmp_path / "p.jsonl"
  programs.write_programs(str(path), [_record()])
  assert programs.read_programs(pathlib.Path(path)) == [_record()]
