"""Tests for pad_jax.execution.scoring: run as written, vote, combine, summarize."""

import pytest

from pad_jax.execution import ExecResult, scoring
from pad_jax.execution.limits import ExecLimits


def _ok(value):
  return ExecResult("ok", value, None, 0.25)


def _failed(status="runtime_error"):
  return ExecResult(status, None, f"line 2: {status}", 0.5)


def test_majority_vote():
  assert scoring.majority_vote([3, 4, 4, None, 3.0, 4.0]) == 4.0
  assert scoring.majority_vote([1, 2]) == 1.0  # a tie goes to the first seen
  assert scoring.majority_vote([0.1 + 0.2, 0.3, 7]) == pytest.approx(0.3)
  assert scoring.majority_vote(["1,000", 1000.0, 5]) == 1000.0
  assert scoring.majority_vote([None, "abc", float("nan")]) is None
  assert scoring.majority_vote([]) is None


def test_combine_k_programs_votes_over_the_runnable_ones():
  row = scoring.combine([_failed(), _ok(5), _ok(6), _ok(5.0), _failed("timeout")], 5)
  assert row["value"] == 5 and row["correct"] is True
  assert row["status"] == "ok" and row["error"] is None  # the first runnable one's
  assert (row["num_programs"], row["runnable_programs"]) == (5, 3)
  assert row["seconds"] == pytest.approx(3 * 0.25 + 2 * 0.5)


def test_combine_k_programs_none_runnable_takes_the_first_failure():
  row = scoring.combine([_failed("syntax_error"), _failed("timeout")], 1)
  assert (row["status"], row["value"], row["correct"]) == ("syntax_error", None, False)
  assert row["error"] == "line 2: syntax_error"


def test_combine_k_programs_a_tie_goes_to_the_first_seen_and_modes_compare():
  assert scoring.combine([_ok(2.6), _ok(7)], 3, mode="pad")["correct"] is True
  assert scoring.combine([_ok(2.6), _ok(7)], 3, mode="strict")["correct"] is False


def test_combine_one_program():
  assert scoring.combine([_ok(42)], "42")["correct"] is True
  assert scoring.combine([_failed()], 42)["value"] is None


def test_summarize_counts_every_status():
  rows = [scoring.combine([r], 5) for r in (_ok(5), _ok(4), _failed(), _failed("timeout"))]
  summary = scoring.summarize(rows)
  assert summary["n"] == 4 and summary["accuracy"] == 0.25 and summary["runnable_rate"] == 0.5
  assert summary["status_counts"]["runtime_error"] == 1 and summary["status_counts"]["crashed"] == 0
  assert scoring.summarize([])["accuracy"] == 0.0


def test_program_to_run_keeps_programs_and_extracts_only_from_text():
  program = "import numpyy_not_here\n\ndef solution():\n    return 1\n"
  assert scoring.program_to_run(program) == program  # unchanged, even its failing import
  chatty = "Sure:\n```python\ndef solution():\n    return 7\n```\nDone."
  assert scoring.program_to_run(chatty).startswith("def solution():")
  assert scoring.program_to_run("no code") == "no code"
  assert scoring.program_to_run(None) is None
  printing = "print(6 * 7)"
  assert scoring.program_to_run(printing, exec_mode="print") == printing


def test_score_k_predictions_end_to_end():
  rows = scoring.score([5, 1], [["def solution():\n    return 5", "def solution(:",
                                 "def solution():\n    return 5.0"], None],
                       ExecLimits(workers=1, timeout_s=3.0))
  assert rows[0]["correct"] and rows[0]["runnable_programs"] == 2
  assert rows[1]["status"] == "no_solution"
  with pytest.raises(ValueError, match="2 targets but 1 predictions"):
    scoring.score([1, 2], ["x"])
