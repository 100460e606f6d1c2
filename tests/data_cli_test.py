"""Tests for `python -m pad_jax.data` (run as a real subprocess)."""

import json
import os
import subprocess
import sys

import pytest

from pad_jax.data import programs

EXPECTED = {
    "gsm8k": {"train": 7473, "test": 1319},
    "svamp": {"test": 1000},
    "asdiv": {"test": 2096},
    "multiarith": {"test": 600},
    "addsub": {"test": 395},
    "singleeq": {"test": 508},
    "singleop": {"test": 562},
    "gsmhard": {"test": 1319},
}


def _run(*args, env=None, cwd=None):
  full_env = dict(os.environ)
  full_env.pop("PAD_DATA_DIR", None)
  full_env.update(env or {})
  return subprocess.run([sys.executable, "-m", "pad_jax.data", *args],
                        capture_output=True, text=True, env=full_env, cwd=cwd,
                        timeout=120, check=False)


def test_stats_json_default_data_dir(tmp_path):
  # From another directory: the default is found relative to the repo.
  result = _run("stats", "--format=json", cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert json.loads(result.stdout) == EXPECTED
  assert list(json.loads(result.stdout)) == list(EXPECTED)


def test_stats_table(shared_data):
  result = _run("stats", "--format=table", f"--data_dir={shared_data}")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == f"data: {shared_data}"
  assert lines[1].split() == ["benchmark", "split", "examples"]
  rows = [line.split() for line in lines if line.split()
          and line.split()[0] in EXPECTED]
  assert rows == [[name, split, str(count)]
                  for name, splits in EXPECTED.items()
                  for split, count in splits.items()]
  assert lines[-1].split() == ["total", str(sum(
      n for splits in EXPECTED.values() for n in splits.values()))]


def test_data_dir_flag_beats_env(shared_data, tmp_path):
  missing = tmp_path / "missing"
  result = _run("stats", "--format=json", f"--data_dir={shared_data}",
                env={"PAD_DATA_DIR": str(missing)})
  assert result.returncode == 0, result.stderr
  result = _run("stats", "--format=json", env={"PAD_DATA_DIR": str(missing)})
  assert result.returncode == 2
  assert result.stdout == ""
  (line,) = result.stderr.strip().splitlines()
  assert line.startswith(f"error: {missing}: ")
  assert "PAD_DATA_DIR" in line and "--data_dir" in line


def test_bad_data_file_is_one_line_error(tmp_path):
  bad = tmp_path / "gsm8k" / "train.jsonl"
  bad.parent.mkdir()
  bad.write_text('{"question": "q?", "answer": "#### 1"}\n'
                 '{"question": "q?", "answer": "#### lots"}\n')
  result = _run("stats", f"--data_dir={tmp_path}")
  assert result.returncode == 2
  assert result.stderr.strip() == (
      f"error: {bad}:2: field 'answer': final answer after '####' is not a "
      "number: 'lots'")


def test_show(shared_data):
  result = _run("show", "--benchmark=gsm8k", "--split=test", "--limit=3",
                f"--data_dir={shared_data}")
  assert result.returncode == 0, result.stderr
  rows = [json.loads(line) for line in result.stdout.splitlines()]
  assert [r["id"] for r in rows] == [f"gsm8k-test-0000{i}" for i in range(3)]
  assert rows[0]["answer"] == 18.0 and "<<16-3-4=9>>" in rows[0]["rationale"]
  result = _run("show", "--benchmark=gsmhard", "--limit=1",
                f"--data_dir={shared_data}")
  (row,) = [json.loads(line) for line in result.stdout.splitlines()]
  assert "def solution():" in row["reference_program"]


@pytest.mark.parametrize("args,message", [
    ((), "expected one command"),
    (("bogus",), "expected one command"),
    (("stats", "extra"), "expected one command"),
    (("show",), "show needs --benchmark="),
    (("show", "--benchmark=svamp", "--split=train"), "svamp has splits test"),
    (("validate",), "validate needs --path="),
])
def test_usage_errors(args, message):
  result = _run(*args)
  assert result.returncode == 2
  (line,) = result.stderr.strip().splitlines()
  assert message in line


def test_bad_flag_value():
  result = _run("stats", "--format=xml")
  assert result.returncode != 0
  assert "table|json" in result.stderr


def test_help():
  result = _run("--help")
  # absl's --help prints usage to stdout and exits 1 (as t5x's CLIs do).
  assert result.returncode in (0, 1) and result.stderr == ""
  for text in ("stats", "show", "validate", "--data_dir", "--format"):
    assert text in result.stdout


def test_validate(tmp_path):
  path = tmp_path / "p.jsonl"
  record = programs.ProgramRecord(
      id="q-1", question="1 + 1?", program="def solution():\n  return 2\n",
      answer=2, teacher="gold", prompt_variant=0, sample=0)
  programs.write_programs(path, [record, record, record])
  result = _run("validate", f"--path={path}")
  assert result.returncode == 0, result.stderr
  assert json.loads(result.stdout) == {"path": str(path), "records": 3,
                                       "questions": 1,
                                       "teachers": {"gold": 3}}
  with open(path, "a", encoding="utf-8") as f:
    f.write('{"id": "q-2", "quest')
  result = _run("validate", f"--path={path}")
  assert result.returncode == 2
  assert result.stderr.startswith(f"error: {path}:4: torn last line")
  result = _run("validate", f"--path={path}", "--allow_torn_tail")
  assert result.returncode == 0, result.stderr
  assert json.loads(result.stdout)["records"] == 3
