"""Verification on Apache Beam keeps exactly the single-process verifier's programs."""

import json
import subprocess
import sys

import pytest

from fake_openai import chatty
from pad_jax.data.programs import read_programs
from pad_jax.execution.limits import ExecLimits
from pad_jax.teacher import beam_verify
from pad_jax.teacher import verify as verify_lib

QUESTIONS = 300
LIMITS = ExecLimits(workers=2, timeout_s=0.5)


def _program(i, style=0):
  if style == 0:
    return f"def solution():\n    a = {i}\n    b = 3\n    return a * b + 1"
  # The same code with other spacing, a comment and a docstring: a duplicate.
  return (f'def solution():\n    """Triple and one more."""\n    a = {i}  # apples\n'
          f"    b = 3\n\n    return a*b + 1")


HOSTILE = [
    "def solution():\n    import os\n    return os.getuid()",
    "def solution():\n    return open('/etc/passwd').read()",
    "def solution():\n    x = 'a' * (10 ** 10)\n    return 1",
    "def solution():\n    return __import__('subprocess').run(['id'])",
    "def solution():\n    return [][1]",
]


def _rows():
  """~2,400 completions: correct (plain and chatty), duplicates, wrong, chatty
  prose without code, hostile programs, a few timeouts."""
  rows = []
  for i in range(QUESTIONS):
    qid = f"q{i:04d}"
    texts = [
        _program(i),                                  # Correct.
        chatty(_program(i, style=1)),                 # Correct, a duplicate of the first.
        chatty(_program(i).replace("+ 1", "+ 2")),    # Wrong.
        "Let me think. The answer is clearly 42.",   # No program.
        HOSTILE[i % len(HOSTILE)],                    # Hostile.
        _program(i).replace("b = 3", "b = 3.0"),      # Correct (a float value).
        chatty(_program(i)),                          # Correct, the same text as the first.
        _program(i).replace("return", "return 0.4 +") if i % 2 else _program(i),
    ]
    if i % 100 == 7:
      texts[3] = "def solution():\n    while True:\n        pass"  # Timeout.
    for sample, text in enumerate(texts):
      rows.append({"key": f"{qid}:{sample}", "id": qid, "sample": sample,
                   "prompt_variant": sample % 3, "question": f"Question {i}?",
                   "answer": float(3 * i + 1), "text": text, "model": "m", "teacher": "m",
                   "usage": {"prompt_tokens": 10, "completion_tokens": 5}, "cost_usd": 0.001})
  return rows


def _write(path, rows, torn=False):
  data = "".join(json.dumps(r) + "\n" for r in rows)
  if torn:
    data += '{"key": "torn", "id": "q9", "te'
  path.write_text(data)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
  """The same completions as one file (single process) and as 3 shards (Beam)."""
  rows = _rows()
  # A key repeated later (another text): both readers keep its first row.
  rows.append(dict(rows[0], text="def solution():\n    return -1"))
  single = tmp_path_factory.mktemp("single")
  _write(single / "completions.jsonl", rows, torn=True)
  sharded = tmp_path_factory.mktemp("sharded")
  third = len(rows) // 3
  _write(sharded / "completions-00000.jsonl", rows[:third])
  _write(sharded / "completions-00001.jsonl", rows[third:2 * third])
  _write(sharded / "completions-00002.jsonl", rows[2 * third:], torn=True)
  for directory in (single, sharded):
    (directory / "failed.jsonl").write_text(json.dumps(
        {"key": "lost", "id": "q9999", "error": "HTTP 500: gave up"}) + "\n")
    (directory / "run.json").write_text(json.dumps({"teacher": "fake", "questions": QUESTIONS + 1}))
  return single, sharded


def _programs(out_dir, pattern):
  return [r for p in sorted(out_dir.glob(pattern)) for r in read_programs(p)]


def test_beam_keeps_the_same_programs_and_report(dirs, tmp_path):
  single, sharded = dirs
  expected = verify_lib.verify_dir(single, LIMITS, out_dir=tmp_path / "single")
  report = beam_verify.verify_beam(
      str(sharded), str(tmp_path / "beam"), LIMITS, num_shards=3,
      pipeline_args=["--runner=DirectRunner", "--direct_num_workers=2",
                     "--direct_running_mode=multi_processing"])
  want = _programs(tmp_path / "single", "programs.jsonl")
  got = _programs(tmp_path / "beam", "programs-*-of-00003.jsonl")
  assert len(list((tmp_path / "beam").glob("programs-*.jsonl"))) == 3
  assert sorted(got, key=lambda r: (r.id, str(r.prompt_variant), r.sample)) == want
  # Not vacuous: correct, duplicates, wrong and hostile completions were all there.
  assert QUESTIONS <= len(want) < 3 * QUESTIONS
  assert expected["duplicates_dropped"] >= QUESTIONS
  assert {"forbidden_import", "timeout", "extraction_failed"} <= set(expected["status_counts"])
  assert expected["wrong_answer"] >= QUESTIONS
  assert expected["completions"] == 8 * QUESTIONS
  for key in ("verify_seconds",):
    expected.pop(key), report.pop(key)
  assert report == expected
  # Each shard is sorted by id, and a question lives in exactly one shard.
  for path in (tmp_path / "beam").glob("programs-*.jsonl"):
    ids = [r.id for r in read_programs(path)]
    assert ids == sorted(ids)
    assert all(beam_verify.shard_of(i, 3) == int(path.name[9:14]) for i in ids)


def test_cli_on_direct_runner_and_bad_input(tmp_path):
  rows = _rows()[:16]
  _write(tmp_path / "completions.jsonl", rows)
  result = subprocess.run(
      [sys.executable, "-m", "pad_jax.verify", f"--in_dir={tmp_path}",
       f"--out_dir={tmp_path / 'out'}", "--runner=DirectRunner", "--num_shards=2",
       "--workers=1", "--timeout_s=0.5", "--", "--direct_num_workers=1"],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  # The default comparison (tolerance) does not keep q1's `0.4 + ...` program.
  assert "kept 4 programs for 2/2 questions" in result.stdout, result.stdout
  assert len(_programs(tmp_path / "out", "programs-*-of-00002.jsonl")) == 4
  assert json.loads((tmp_path / "out" / "report.json").read_text())["kept"] == 4

  bad = tmp_path / "bad"
  bad.mkdir()
  _write(bad / "completions-1.jsonl", [{k: v for k, v in rows[0].items() if k != "answer"}])
  result = subprocess.run(
      [sys.executable, "-m", "pad_jax.verify", f"--in_dir={bad}", "--runner=DirectRunner"],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 2, result.stderr[-3000:]
  assert result.stderr.strip().splitlines()[-1] == (
      f"error: {bad / 'completions-1.jsonl'}:1: field 'answer': missing field")
