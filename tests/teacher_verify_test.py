"""Verification: completions.jsonl -> programs.jsonl + report.json + report.png."""

import json
import subprocess
import sys

import pytest

from teacher_testlib import read_jsonl
from pad_jax.data.programs import read_programs
from pad_jax.execution.limits import ExecLimits
from pad_jax.teacher import verify as verify_lib

FENCE = "```"
CORRECT = "def solution():\n    apples = 3\n    eaten = 1\n    result = apples * 4 - eaten\n    return result"
SAME_CODE = ("def solution():\n    # Four bags of apples.\n    apples = 3\n    eaten = 1\n"
             "    result = apples*4 - eaten   # spacing differs\n    return result")


def _row(key, qid, text, answer=11.0, variant=0, sample=0):
  return {"key": key, "id": qid, "sample": sample, "prompt_variant": variant,
          "question": f"Question {qid}?", "answer": answer, "text": text, "model": "m",
          "teacher": "m", "usage": {"prompt_tokens": 10, "completion_tokens": 5},
          "cost_usd": 0.001}


ROWS = [
    _row("k1", "q1", f"Here:\n{FENCE}python\n{CORRECT}\n{FENCE}", variant=0, sample=0),
    _row("k2", "q1", f"{FENCE}\n{SAME_CODE}\n\nprint(solution())\n{FENCE}", variant=1, sample=1),
    _row("k3", "q1", "def solution():\n    return 12", variant=1, sample=2),  # Wrong.
    _row("k4", "q2", "I cannot write code for this.", answer=5.0),  # No program.
    _row("k5", "q2", "def solution():\n    return 1 / 0", answer=5.0, sample=1),  # Error.
    _row("k6", "q3", "def solution():\n    while True:\n        pass", answer=2.0),  # Timeout.
    _row("k7", "q4", "def solution():\n    return 7.4", answer=7.0),  # Right only in pad mode.
    _row("k8", "q5", "def solution():\n    import os\n    return 1", answer=1.0),  # Not allowed.
]


def test_the_default_mode_never_keeps_a_wrong_answer(tmp_path):
  # Real gpt-3.5-turbo GSM8K completions return 16.5 for gold 16 (Python's
  # round(16.5) == 16 made the paper's check keep it) and float noise such as
  # 40.00000000000001 for gold 40 (right).
  in_dir = tmp_path / "in"
  in_dir.mkdir()
  rows = [_row("k1", "q1", "def solution():\n    return 33 / 2", answer=16.0),
          _row("k2", "q2", "def solution():\n    return 0.1 * 3 * 400 / 3", answer=40.0)]
  assert 0.1 * 3 * 400 / 3 == 40.00000000000001
  (in_dir / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  report = verify_lib.verify_dir(in_dir, ExecLimits(workers=1, timeout_s=5.0),
                                 out_dir=tmp_path / "out")
  assert [p.id for p in read_programs(tmp_path / "out" / "programs.jsonl")] == ["q2"]
  assert report["mode"] == "tolerance"
  # Both counts, as before: the paper's rounding would have kept both.
  assert report["correct"] == {"tolerance": 1, "pad": 2, "strict": 1}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("verify")
  data = "".join(json.dumps(r) + "\n" for r in ROWS)
  data += json.dumps(ROWS[0]) + "\n"  # The same completion twice: counted once.
  data += '{"key": "k9", "id": "q9", "te'  # A torn last line.
  (directory / "completions.jsonl").write_text(data)
  (directory / "failed.jsonl").write_text(json.dumps(
      {"key": "k10", "id": "q6", "sample": 0, "prompt_variant": 0,
       "error": "HTTP 500: internal error (gave up after 6 attempts)"}) + "\n")
  return directory


def test_verify_dir_keeps_correct_deduplicated_programs(run_dir, tmp_path):
  # The paper's rounded comparison, by name (q4's 7.4 is "right" for 7 there).
  report = verify_lib.verify_dir(run_dir, ExecLimits(workers=1, timeout_s=1.0, answer_mode="pad"),
                                 out_dir=tmp_path)
  programs = read_programs(tmp_path / "programs.jsonl")
  assert [(p.id, p.sample) for p in programs] == [("q1", 0), ("q4", 0)]
  assert programs[0].program == CORRECT and programs[0].answer == 11.0
  assert programs[0].prompt_variant == 0 and programs[0].teacher == "m"
  assert report["completions"] == 8
  assert report["duplicates_dropped"] == 1
  assert report["status_counts"]["extraction_failed"] == 1
  assert report["status_counts"]["runtime_error"] == 1
  assert report["status_counts"]["timeout"] == 1
  assert report["status_counts"]["forbidden_import"] == 1
  assert report["correct"] == {"tolerance": 2, "pad": 3, "strict": 2}
  assert report["wrong_answer"] == 1
  assert report["pass_rate"] == pytest.approx(3 / 8, abs=1e-4)
  assert report["pass_rate_by_variant"]["1"] == {"completions": 2, "correct": 1,
                                                 "pass_rate": 0.5}
  assert report["kept"] == 2 and report["questions_with_program"] == 2
  assert report["failed_requests"] == 1 and report["questions"] == 6
  assert report["coverage"] == pytest.approx(2 / 6, abs=1e-4)
  assert report["tokens"] == {"prompt_tokens": 80, "completion_tokens": 40, "total_tokens": 120}
  assert report["cost_usd"] == pytest.approx(0.008)
  assert json.loads((tmp_path / "report.json").read_text()) == report
  assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_strict_mode_keeps_fewer(run_dir, tmp_path):
  report = verify_lib.verify_dir(run_dir, ExecLimits(answer_mode="strict", workers=1,
                                                                  timeout_s=1.0),
                                 out_dir=tmp_path)
  assert [p.id for p in read_programs(tmp_path / "programs.jsonl")] == ["q1"]
  assert report["mode"] == "strict" and report["kept"] == 1


def test_cli_redoes_verification_and_reports_bad_rows(run_dir, tmp_path):
  result = subprocess.run([sys.executable, "-m", "pad_jax.verify", f"--in_dir={run_dir}",
                           f"--out_dir={tmp_path}", "--workers=1", "--timeout_s=1",
                           "--mode=pad"],
                          capture_output=True, timeout=120)
  assert result.returncode == 0, result.stderr.decode()[-2000:]
  assert "kept 2 programs" in result.stdout.decode()
  assert len(read_jsonl(tmp_path / "programs.jsonl")) == 2
  bad = tmp_path / "bad"
  bad.mkdir()
  rows = [dict(ROWS[0]), {k: v for k, v in ROWS[1].items() if k != "answer"}]
  (bad / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  result = subprocess.run([sys.executable, "-m", "pad_jax.verify", f"--in_dir={bad}"],
                          capture_output=True, timeout=60)
  assert result.returncode == 2
  error = result.stderr.decode().strip().splitlines()
  assert error == [f"error: {bad}/completions.jsonl:2: field 'answer': missing field"]


@pytest.mark.parametrize("args, expected", [
    (["--in_dir={empty}"], "{empty}/completions.jsonl: not found"),
    (["--in_dir={bad}", "--workers=0"], "ExecLimits.workers: must be None or an integer > 0"),
    (["--in_dir={bad}", "--timeout_s=-1"], "ExecLimits.timeout_s"),
    (["--in_dir={bad}"], "{bad}/completions.jsonl:2: invalid JSON"),
    (["--in_dir={manifest}"], "{manifest}/run.json:1: invalid JSON"),
    ([], "--in_dir is required"),
    (["--in_dir={bad}", "extra"], "unexpected arguments ['extra']"),
])
def test_cli_bad_input_or_flags_exit_2_with_one_line(tmp_path, args, expected):
  dirs = {name: tmp_path / name for name in ("empty", "bad", "manifest")}
  for directory in dirs.values():
    directory.mkdir()
  (dirs["bad"] / "completions.jsonl").write_text(json.dumps(ROWS[0]) + "\n{not json}\n")
  (dirs["manifest"] / "completions.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
  (dirs["manifest"] / "run.json").write_text("{oops")
  result = subprocess.run([sys.executable, "-m", "pad_jax.verify",
                           *[a.format(**dirs) for a in args]], capture_output=True, timeout=60)
  error = result.stderr.decode().strip().splitlines()
  assert result.returncode == 2, error
  assert len(error) == 1 and error[0].startswith("error: "), error
  assert expected.format(**dirs) in error[0]
  assert not (dirs["manifest"] / "programs.jsonl").exists()  # Checked before any work.


def test_cli_help_lists_the_executor_flags():
  result = subprocess.run([sys.executable, "-m", "pad_jax.verify", "--help"],
                          capture_output=True, timeout=60)
  text = result.stdout.decode()
  for flag in ("--in_dir", "--out_dir", "--workers", "--timeout_s", "--memory_mb", "--mode",
               "--exec_mode", "--isolation"):
    assert f"{flag}:" in text, flag


def test_programs_register_as_a_seqio_task(run_dir, tmp_path):
  verify_lib.verify_dir(run_dir, ExecLimits(workers=1, timeout_s=1.0, answer_mode="pad"),
                        out_dir=tmp_path)
  from tasks import program_tasks  # pylint: disable=g-import-not-at-top
  task = program_tasks.register_program_task("teacher_verify_test_task",
                                             str(tmp_path / "programs.jsonl"),
                                             validation_fraction=0.0)
  examples = list(task.get_dataset(split="train", sequence_length=None, shuffle=False)
                  .as_numpy_iterator())
  assert len(examples) == 2
  assert {e["targets_pretokenized"].decode() for e in examples} == {CORRECT,
                                                                   "def solution():\n    return 7.4"}
