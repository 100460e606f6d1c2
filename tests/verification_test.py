"""Tests for pad_jax.execution.verification: verdicts, duplicates and counts (no sandbox)."""

from pad_jax.execution import ExecResult
from pad_jax.execution import verification

CORRECT = "def solution():\n    return 12"


class FakeExecutor:
  """Returns the literal after `return`; counts the programs it ran."""

  def __init__(self):
    self.ran = []

  def run(self, programs):
    self.ran.extend(programs)
    results = []
    for program in programs:
      if "raise" in program:
        results.append(ExecResult("runtime_error", None, "boom", 0.0))
      else:
        results.append(ExecResult("ok", float(program.rsplit("return", 1)[1]), None, 0.0))
    return results


def _verdict(qid, program, answer=12.0, variant=0, sample=0):
  return verification.Verdict(row={"id": qid, "answer": answer, "prompt_variant": variant,
                                   "sample": sample}, program=program, status="")


def test_execute_runs_each_text_once_and_compares_under_every_mode():
  executor, seen = FakeExecutor(), {}
  verdicts = [_verdict("q1", CORRECT), _verdict("q2", CORRECT, sample=1),
              _verdict("q3", "def solution():\n    return 12.4"),
              _verdict("q4", "def solution():\n    raise ValueError"),
              _verdict("q5", None)]
  verification.execute(executor, verdicts, seen)
  assert executor.ran.count(CORRECT) == 1
  assert [v.status for v in verdicts] == ["ok", "ok", "ok", "runtime_error",
                                          verification.EXTRACTION_FAILED]
  assert verdicts[2].match == {"tolerance": False, "pad": True, "strict": False}
  verification.execute(executor, [_verdict("q6", CORRECT)], seen)
  assert executor.ran.count(CORRECT) == 1  # Seen before: not run again.


def test_completion_verdicts_extract_the_program():
  verdict = verification.from_completion({"text": f"Here:\n```python\n{CORRECT}\n```\n"})
  assert verdict.program == CORRECT
  assert verification.from_completion({"text": "no idea"}).program is None


def test_normalize_program_ignores_comments_docstrings_and_spacing():
  with_doc = 'def solution():\n    """Q?"""\n    x = 1 # one\n    return x'
  assert verification.normalize_program(with_doc) == verification.normalize_program(
      "def solution():\n  x=1\n  return x")
  assert verification.normalize_program(CORRECT) != verification.normalize_program(
      CORRECT.replace("12", "13"))


def test_select_sorts_and_drops_duplicates_per_question():
  same = "def solution():\n    # twelve\n    return 12"
  verdicts = [_verdict("q2", CORRECT), _verdict("q1", same, sample=1), _verdict("q1", CORRECT),
              _verdict("q2", "def solution():\n    return 5")]
  verification.execute(FakeExecutor(), verdicts)
  kept, duplicates = verification.select(verdicts, "pad")
  assert [(v.row["id"], v.row["sample"]) for v in kept] == [("q1", 0), ("q2", 0)]
  assert duplicates == 1


def test_tally_counts_statuses_correct_and_variants():
  verdicts = [_verdict("q1", CORRECT, variant=0), _verdict("q2", "def solution():\n    return 3",
                                                           variant=1),
              _verdict("q3", "def solution():\n    raise ValueError", variant=1),
              _verdict("q4", None, variant=0)]
  verification.execute(FakeExecutor(), verdicts)
  counts = verification.tally(verdicts, "pad")
  assert counts.status_counts == {"ok": 2, "runtime_error": 1,
                                  verification.EXTRACTION_FAILED: 1}
  assert counts.correct == {"tolerance": 1, "pad": 1, "strict": 1}
  assert counts.wrong_answer == 1
  assert counts.by_variant == {"0": [2, 1], "1": [2, 0]}
  assert counts.outcome_counts() == {"runtime_error": 1, verification.EXTRACTION_FAILED: 1,
                                     "ok": 1, verification.WRONG_ANSWER: 1}
