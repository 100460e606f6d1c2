"""pad_jax.decoding.refine_loop: self-refinement at inference with a decoder whose outputs we control.

The loop, the sandboxed executor, the feedback and the refinement input are
the real ones; only the student is replaced by `ScriptedDecoder`, which
writes a program with an undefined name for questions marked "plant" and
repairs it when the refinement input shows it the NameError feedback.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from pad_jax import jsonl
from pad_jax.execution.limits import ExecLimits
from pad_jax.decoding import refine_loop as loop

DECODER_SOURCE = '''
import json, time, types
from pad_jax.student import vocab

GOOD = "def solution():\\n    apples = {n}\\n    more = apples + 2\\n    return more"
BAD = "def solution():\\n    apples = {n}\\n    more = total_apples + 2\\n    return more"


class ScriptedDecoder:
  def __init__(self, log_path, hang_on_refinement=False):
    self.vocabulary = vocab.CodeT5Vocabulary()
    self.options = types.SimpleNamespace(batch_size=2, max_input_length=512)
    self.log_path = log_path
    self.hang = hang_on_refinement

  def decode_batch(self, texts, batch_number=0):
    out = []
    for text in texts:
      refining = text.startswith("Question: ")
      with open(self.log_path, "a") as log:
        log.write(json.dumps({"refining": refining, "text": text}) + "\\n")
      if refining and self.hang:
        time.sleep(3600)  # Killed here, mid round 1.
      n = int(text.split("has ")[1].split(" ")[0])
      if refining:
        program = GOOD if "NameError" in text else BAD
      else:
        program = BAD if "plant" in text else GOOD
      out.append({"prediction": program.format(n=n), "tokens": [5, 2], "score": -1.0})
    return out
'''

QUESTIONS = [{"id": f"q{i}", "question": f"Ann has {i} apples{' (plant)' if i % 2 else ''}. "
              "She gets 2 more. How many?", "answer": i + 2} for i in range(5)]


@pytest.fixture()
def decoder_module(tmp_path, monkeypatch):
  (tmp_path / "scripted_decoder.py").write_text(DECODER_SOURCE)
  monkeypatch.syspath_prepend(str(tmp_path))
  import scripted_decoder  # pylint: disable=g-import-not-at-top
  return scripted_decoder


def _todo():
  return list(enumerate(QUESTIONS))


def test_refinement_fixes_planted_failures(decoder_module, tmp_path):
  out = tmp_path / "out.jsonl"
  decoder = decoder_module.ScriptedDecoder(tmp_path / "log.jsonl")
  report = loop.refine_into(decoder, _todo(), str(out), rounds=2,
                            limits=ExecLimits(workers=1), progress=False)
  rows = {r["id"]: r for r in jsonl.read_rows(out)}
  assert set(rows) == {q["id"] for q in QUESTIONS}
  for i, question in enumerate(QUESTIONS):
    row = rows[question["id"]]
    assert "total_apples" not in row["prediction"]
    assert row["answer"] == i + 2  # Input fields are kept.
    if i % 2:  # Planted: failed with its real NameError, then fixed in round 1.
      first, second = row["rounds"]
      assert first["status"] == "runtime_error" and first["feedback"].startswith(
          "runtime_error: NameError: name 'total_apples' is not defined (line 3")
      assert not first["correct"] and second["correct"] and second["value"] == i + 2
    else:
      assert len(row["rounds"]) == 1 and row["rounds"][0]["correct"]
  assert report["per_round"][0] == {"round": 0, "attempted": 5, "fixed": None,
                                    "still_failing": 2, "correct": 3, "broken": None}
  assert report["per_round"][1] == {"round": 1, "attempted": 2, "fixed": 2,
                                    "still_failing": 0, "correct": 2, "broken": 0}
  assert report["per_round"][2]["attempted"] == 0
  assert (report["correct_first"], report["correct_final"]) == (3, 5)
  files = loop.paths(str(out))
  assert json.loads(pathlib.Path(files["report"]).read_text()) == report
  assert "| 1 | 2 | 2 | 0 | 2 | 0 |" in pathlib.Path(files["table"]).read_text()
  # The refinement input carried the question, the faulty program and its feedback.
  refining = [json.loads(l) for l in open(tmp_path / "log.jsonl") if '"refining": true' in l]
  assert len(refining) == 2
  assert all(r["text"].startswith("Question: Ann has") and "total_apples + 2" in r["text"]
             and "Feedback: runtime_error: NameError" in r["text"] for r in refining)


RUNNER = '''
import sys
sys.path.insert(0, sys.argv[1])
import scripted_decoder
from pad_jax.execution.limits import ExecLimits
from pad_jax.decoding import refine_loop as loop
questions = {questions}
decoder = scripted_decoder.ScriptedDecoder(sys.argv[2], hang_on_refinement=sys.argv[4] == "hang")
loop.refine_into(decoder, list(enumerate(questions)), sys.argv[3], rounds=2,
                 limits=ExecLimits(workers=1), progress=False)
'''


def test_resumes_after_kill_9_without_redoing_finished_rounds(tmp_path):
  (tmp_path / "scripted_decoder.py").write_text(DECODER_SOURCE)
  script = tmp_path / "runner.py"
  script.write_text(RUNNER.format(questions=repr(QUESTIONS)))
  out, log = tmp_path / "out.jsonl", tmp_path / "log.jsonl"
  argv = [sys.executable, str(script), str(tmp_path), str(log), str(out)]
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  proc = subprocess.Popen(argv + ["hang"], cwd=REPO, env=env, start_new_session=True)
  try:
    deadline = time.monotonic() + 120
    while not (log.exists() and '"refining": true' in log.read_text()):
      assert proc.poll() is None and time.monotonic() < deadline
      time.sleep(0.2)
  finally:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
  rounds_file = pathlib.Path(loop.paths(str(out))["rounds"])
  assert len(jsonl.read_resumable(rounds_file)) == 5  # Round 0 done, round 1 not.
  assert not out.exists() or not jsonl.read_resumable(out)
  log.write_text("")
  resumed = subprocess.run(argv + ["run"], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  calls = [json.loads(l) for l in log.read_text().splitlines()]
  assert calls and all(c["refining"] for c in calls)  # No question decoded twice.
  assert len(calls) == 2
  rows = jsonl.read_rows(out)
  assert sorted(r["id"] for r in rows) == [q["id"] for q in QUESTIONS]
  assert all(r["rounds"][-1]["correct"] for r in rows)
  assert [r["round"] for r in jsonl.read_rows(rounds_file)] == [0] * 5 + [1, 1]


def _training_and_inference(results, program="def solution():\n    return 1"):
  """What pad_jax.refine keeps and what the loop refines, for the same executed programs."""
  from pad_jax.refine import data  # pylint: disable=g-import-not-at-top
  limits = ExecLimits(workers=1)
  candidates = [data.Candidate(row_id=f"q{i}/student/0", record=f"student:q{i}",
                               question_id=f"q{i}", question="Ann has 1 apple.",
                               program=program, target="t",
                               answer=999.0, source="student") for i in range(len(results))]
  rows, _ = data.judge(candidates, results, limits)
  trained = {r["question_id"]: r["feedback"] for r in rows}
  batch = [{"id": c.question_id, "question": c.question} for c in candidates]
  decoded = [{"prediction": c.program, "tokens": [], "score": 0.0} for c in candidates]
  entries = loop._round_rows(batch, 0, decoded, results, limits)  # pylint: disable=protected-access
  refined = {e["id"]: e["feedback"] for e in entries if e["needs_refinement"]}
  return trained, refined


def test_the_inference_trigger_and_the_training_filter_are_one_function(monkeypatch):
  from pad_jax.execution import feedback  # pylint: disable=g-import-not-at-top
  from pad_jax.execution.executor import ExecResult  # pylint: disable=g-import-not-at-top
  results = [ExecResult("ok", 12.0, None, 0.1), ExecResult("ok", None, None, 0.1),
             ExecResult("runtime_error", None, "ZeroDivisionError: division by zero", 0.1),
             ExecResult("timeout", None, None, 2.0), ExecResult("ok", -4.0, None, 0.1),
             ExecResult("bad_return", None, "returned 'x' (not a finite number)", 0.1)]
  trained, refined = _training_and_inference(results)
  # A wrong number (the gold answer is 999) is neither taught nor refined.
  assert trained == refined and set(trained) == {"q1", "q2", "q3", "q5"}
  assert all(text == feedback.refinement_feedback(results[int(q[1:])])
             for q, text in trained.items())
  # Both sides call feedback.refinement_feedback: replace it, and both follow.
  # A given the question does not contain: both sides flag it, with the same text.
  trained, refined = _training_and_inference(results, "def solution():\n    a = 5\n    return a")
  assert trained == refined and set(trained) == {f"q{i}" for i in range(6)}
  assert trained["q0"] == "ungrounded_number: line 2: a = 5: 5 is not a number in the question"
  monkeypatch.setattr(feedback, "refinement_feedback",
                      lambda r, *question_program: f"stub {r.status}" if r.value != 12.0 else None)
  trained, refined = _training_and_inference(results)
  assert trained == refined == {f"q{i}": f"stub {results[i].status}" for i in range(1, 6)}
