"""Tests for `python -m pad_jax.score`."""

import json
import subprocess
import sys

import pytest

from pad_jax import metrics
from pad_jax import score
from pad_jax.execution.limits import ExecLimits


def _write(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _run(repo_root, *args):
  return subprocess.run([sys.executable, "-m", "pad_jax.score", *args], cwd=repo_root,
                        capture_output=True, text=True, timeout=300)


ROWS = [
    {"id": "a", "program": "def solution():\n    return 40 + 2", "answer": 42},
    {"id": "b", "program": "Here you go:\n```python\ndef solution():\n    return 7\n```\nDone.",
     "answer": "7"},
    {"id": "c", "program": "def solution():\n    return 1 / 0", "answer": 1},
    {"id": "d", "program": ["def solution():\n    return 5", "def solution():\n    return 6",
                            "def solution():\n    return 5"], "answer": 5},
    {"id": "e", "program": None, "answer": 3},
]


def test_cli_scores_rows_and_writes_summary(tmp_path, repo_root):
  _write(tmp_path / "in.jsonl", ROWS)
  out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
  proc = _run(repo_root, f"--input={tmp_path / 'in.jsonl'}", f"--output={out}",
              f"--summary={summary}", "--workers=2", "--timeout_s=3")
  assert proc.returncode == 0, proc.stderr
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [r["id"] for r in rows] == ["a", "b", "c", "d", "e"]
  assert [r["status"] for r in rows] == ["ok", "ok", "runtime_error", "ok", "no_solution"]
  assert [r["correct"] for r in rows] == [True, True, False, True, False]
  assert rows[1]["value"] == 7  # extracted from the markdown completion
  assert rows[3]["num_programs"] == 3 and rows[3]["runnable_programs"] == 3
  assert "ZeroDivisionError" in rows[2]["error"]
  for row in rows:
    assert set(row) >= {"id", "status", "value", "correct", "error", "seconds"}
  data = json.loads(summary.read_text())
  assert data["n"] == 5
  assert data["accuracy"] == pytest.approx(3 / 5)
  assert data["runnable_rate"] == pytest.approx(3 / 5)
  assert data["status_counts"]["ok"] == 3 and data["status_counts"]["no_solution"] == 1
  assert data["programs_per_s"] > 0
  assert not (tmp_path / "out.jsonl.partial").exists()


@pytest.mark.parametrize("line, message", [
    ('{"id": "a", "program": "x"}', "in.jsonl:2: field 'answer': missing"),
    ('{"id": "a", "program": 5, "answer": 1}', "in.jsonl:2: field 'program'"),
    ('{"id": "a", "program": "x", "answer": "n/a"}', "in.jsonl:2: field 'answer': not a finite"),
    ('not json', "in.jsonl:2: invalid JSON"),
    ('{"id": "z", "program": "x", "answer": 1}', "in.jsonl:2: field 'id': duplicate"),
])
def test_malformed_input_exits_2_and_writes_nothing(tmp_path, repo_root, line, message):
  first = json.dumps({"id": "z", "program": "def solution():\n    return 1", "answer": 1})
  (tmp_path / "in.jsonl").write_text(first + "\n" + line + "\n")
  out = tmp_path / "out.jsonl"
  proc = _run(repo_root, f"--input={tmp_path / 'in.jsonl'}", f"--output={out}")
  assert proc.returncode == 2
  assert message in proc.stderr
  assert not out.exists() and not (tmp_path / "out.jsonl.partial").exists()


def test_resumes_from_a_partial_output(tmp_path):
  _write(tmp_path / "in.jsonl", ROWS)
  out = tmp_path / "out.jsonl"
  # An interrupted run scored "a" (with a marker value) and tore the next line.
  (tmp_path / "out.jsonl.partial").write_text(
      json.dumps({"id": "a", "status": "ok", "value": 42, "correct": True, "error": None,
                  "seconds": 0.0, "marker": 1}) + "\n" + '{"id": "b", "sta')
  summary = score.score_file(str(tmp_path / "in.jsonl"), str(out), None,
                             ExecLimits(workers=1, timeout_s=3.0), progress=False)
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [r["id"] for r in rows] == ["a", "b", "c", "d", "e"]
  assert rows[0].get("marker") == 1  # kept, not re-run
  assert summary["n"] == 5


def test_missing_input_and_help(tmp_path, repo_root):
  proc = _run(repo_root, f"--input={tmp_path / 'nope.jsonl'}", f"--output={tmp_path / 'o.jsonl'}")
  assert proc.returncode == 2 and "nope.jsonl: file not found" in proc.stderr
  proc = _run(repo_root, "--help")
  assert proc.returncode in (0, 1) and "--program_field" in proc.stdout  # absl exits 1


# A program the model wrote whose module-level import fails in Python.
BAD_IMPORT = "import numpyy_not_here\n\ndef solution():\n    return 42\n"


def test_a_failing_import_is_run_as_written_by_the_cli(tmp_path, repo_root):
  _write(tmp_path / "in.jsonl", [{"id": "x", "program": BAD_IMPORT, "answer": 42}])
  out = tmp_path / "out.jsonl"
  proc = _run(repo_root, f"--input={tmp_path / 'in.jsonl'}", f"--output={out}", "--workers=1")
  assert proc.returncode == 0, proc.stderr
  (row,) = [json.loads(line) for line in out.read_text().splitlines()]
  assert row["status"] in ("forbidden_import", "runtime_error") and row["correct"] is False
  assert "numpyy_not_here" in row["error"]


def test_a_failing_import_is_run_as_written_by_the_seqio_metric():
  result = metrics.execution_metrics([42], [BAD_IMPORT], ExecLimits(workers=1))
  assert result["accuracy"] == 0.0 and result["runnable_rate"] == 0.0
  assert result["status/forbidden_import"] + result["status/runtime_error"] == 1.0


def _scored_row(row_id):
  return json.dumps({"id": row_id, "status": "ok", "value": 1, "correct": False, "error": None,
                     "seconds": 0.0, "marker": row_id}) + "\n"


def test_resuming_over_a_malformed_middle_line_fails_and_changes_nothing(tmp_path, repo_root):
  _write(tmp_path / "in.jsonl", ROWS)
  partial = tmp_path / "out.jsonl.partial"
  partial.write_text(_scored_row("a") + "{not json\n" + _scored_row("c"))
  before = partial.read_bytes()
  proc = _run(repo_root, f"--input={tmp_path / 'in.jsonl'}", f"--output={tmp_path / 'out.jsonl'}")
  assert proc.returncode == 2
  assert f"{partial}:2: invalid JSON" in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1  # one line, no traceback
  assert partial.read_bytes() == before
  assert not (tmp_path / "out.jsonl").exists()


def test_resuming_after_a_torn_last_line_loses_and_duplicates_nothing(tmp_path, repo_root):
  _write(tmp_path / "in.jsonl", ROWS)
  partial = tmp_path / "out.jsonl.partial"
  partial.write_text(_scored_row("a") + _scored_row("c") + '{"id": "d", "stat')
  proc = _run(repo_root, f"--input={tmp_path / 'in.jsonl'}", f"--output={tmp_path / 'out.jsonl'}",
              "--workers=1")
  assert proc.returncode == 0, proc.stderr
  rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
  assert sorted(r["id"] for r in rows) == ["a", "b", "c", "d", "e"]  # each exactly once
  assert [r.get("marker") for r in rows if r["id"] in ("a", "c")] == ["a", "c"]  # kept, not re-run
  assert next(r for r in rows if r["id"] == "d")["correct"] is True  # the torn one was redone
