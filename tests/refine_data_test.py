"""pad_jax.refine data: every mutation operator's feedback is the sandbox's, inputs fit.

Mutants of real GSM8K gold programs are executed in the real executor; the
refinement inputs are counted with the CodeT5 vocabulary.
"""

import json
import os
import random
import signal
import subprocess
import time

import pytest

from conftest import PY
from conftest import REPO
from conftest import run_module
from conftest import subprocess_env
from pad_jax import jsonl
from pad_jax.student import vocab
from pad_jax.data import benchmarks
from pad_jax.data.programs import ProgramRecord
from pad_jax.data.programs import write_programs
from pad_jax.execution.executor import ExecResult
from pad_jax.execution.limits import ExecLimits
from pad_jax.refine import data
from pad_jax.execution import feedback
from pad_jax.data import refine_inputs
from pad_jax.refine import mutations
from pad_jax.teacher import gold

LIMITS = ExecLimits(workers=1)


@pytest.fixture(scope="module")
def records(shared_data):
  train = benchmarks.load("gsm8k", "train", shared_data)[:60]
  return [ProgramRecord(id=e.id, question=e.question, program=p, answer=float(e.answer),
                        teacher="gold", prompt_variant="gold", sample=0)
          for e in train if (p := gold.gold_program(e))]


@pytest.fixture(scope="module")
def built(records, tmp_path_factory):
  out = tmp_path_factory.mktemp("refine")
  data.build_mutations(records, out, LIMITS, progress=False)
  return out


@pytest.fixture(scope="module")
def codet5():
  return vocab.CodeT5Vocabulary()


def test_rows_are_the_mutants_inference_would_refine_with_its_feedback(records, built):
  rows = refine_inputs.read_rows(built / data.ROWS_FILE)
  by_operator = {op: [r for r in rows if r["source"] == f"mutation:{op}"]
                 for op in mutations.OPERATORS}
  assert len(by_operator["undefined_name"]) >= 20
  # Re-execute every kept mutant: it triggers refinement, and its feedback is
  # exactly what inference would show (the sandbox's report, no gold answer).
  with LIMITS.executor() as executor:
    results = executor.run([r["program"] for r in rows])
  for row, result in zip(rows, results):
    assert feedback.needs_refinement(result, row["question"], row["program"])
    assert row["feedback"] == feedback.refinement_feedback(result, row["question"], row["program"])
    assert "expected" not in row["feedback"]
    assert row["status"] == result.status
    if result.status == "ok":  # runs and returns a number, but a given is not in the question
      assert row["feedback"].startswith("ungrounded_number: line ")
      assert row["feedback"] == feedback.grounding_feedback(row["question"], row["program"])
    else:
      assert row["feedback"] == feedback.feedback(result)
    # Only a flagged verified program is its own target (the student learns to keep it).
    assert (row["program"] == row["target"]) == (row["source"] == data.VERIFIED)
  # Miscopied givens: flagged without the gold answer, by the question alone.
  miscopied = by_operator["miscopied_number"]
  assert sum(r["feedback"].startswith("ungrounded_number: ") for r in miscopied) >= 20
  names = [r for r in by_operator["undefined_name"]]
  assert all(r["feedback"].startswith("runtime_error: NameError: name '") and "(line " in
             r["feedback"] for r in names)
  report = data.summarize(built)
  assert report["source_programs"] == len(records)
  assert sum(s["rows"] for s in report["by_source"].values()) == len(rows)
  assert report["by_source"]["mutation:off_by_one"]["discarded_still_correct"] > 0
  # Mutants that run and return a wrong number are dropped and counted.
  wrong_operator = report["by_source"]["mutation:wrong_operator"]
  assert wrong_operator["discarded_not_triggered"] >= 20
  assert wrong_operator["kept"] == wrong_operator["rows"] == len(by_operator["wrong_operator"])
  assert report["discarded_not_triggered"] == sum(
      s["discarded_not_triggered"] for s in report["by_source"].values())
  candidates = sum(len(data.mutation_candidates(r)) for r in records)
  assert candidates == sum(s["kept"] + s["discarded_still_correct"] +
                           s["discarded_not_triggered"] for s in report["by_source"].values())


def test_a_mutant_that_still_returns_the_answer_is_discarded():
  record = ProgramRecord(id="q", question="What is 2 squared?", answer=4.0, teacher="t",
                         prompt_variant=0, sample=0,
                         program="def solution():\n    a = 2\n    b = a ** 2\n    return b")
  verified, mutant = data.mutation_candidates(record, ["wrong_operator"])
  assert verified.program == record.program and verified.source == data.VERIFIED
  assert mutant.program.endswith("b = a * 2\n    return b")  # 2 * 2 is still 4.
  with LIMITS.executor() as executor:
    rows, counts = data.judge([verified, mutant], executor.run([record.program, mutant.program]),
                              LIMITS)
  assert rows == [] and counts == {"mutation:wrong_operator:still_correct": 1,
                                   "verified:still_correct": 1}


def test_a_correct_program_the_check_flags_is_kept_as_its_own_target():
  """A given the question implies (60 minutes an hour): the student learns to keep it."""
  program = ("def solution():\n    hours = 2\n    minutes_per_hour = 60\n"
             "    minutes = hours * minutes_per_hour\n    return minutes")
  record = ProgramRecord(id="q", question="How many minutes are in 2 hours?", answer=120.0,
                         teacher="t", prompt_variant=0, sample=0, program=program)
  verified = data.mutation_candidates(record, [])[0]
  with LIMITS.executor() as executor:
    rows, counts = data.judge([verified], executor.run([program]), LIMITS)
  assert counts == {"verified:kept": 1}
  assert rows[0]["program"] == rows[0]["target"] == program
  assert rows[0]["feedback"] == ("ungrounded_number: line 3: minutes_per_hour = 60: "
                                 "60 is not a number in the question")


def test_mutations_are_deterministic_and_keep_other_lines(records):
  program = records[0].program
  for op in mutations.OPERATORS:
    first = mutations.mutate(program, op, random.Random(3))
    assert first == mutations.mutate(program, op, random.Random(3))
    changed = [a for a, b in zip(program.splitlines(), first.splitlines()) if a != b]
    assert op == "dropped_step" or len(changed) == 1
  assert mutations.mutate("print(1)", "wrong_operator", random.Random(0)) is None
  with pytest.raises(ValueError, match="unknown mutation operator"):
    mutations.mutate(program, "typo", random.Random(0))


def test_refinement_inputs_stay_within_the_budget(built, codet5):
  rows = refine_inputs.read_rows(built / data.ROWS_FILE)
  for row in rows:
    text = refine_inputs.refinement_input(row["question"], row["program"], row["feedback"], codet5)
    assert refine_inputs.input_tokens(text, codet5) <= 512
    assert text == refine_inputs.render(row["question"], row["program"], row["feedback"])
  # An oversized case: every piece is cut, in the documented order.
  row = rows[0]
  long_program = row["program"] + "\n" + "\n".join(f"    extra_{i} = {i} * 3" for i in range(300))
  long_feedback = "runtime_error: NameError: " + "blah " * 400
  long_question = row["question"] + " And more." * 200
  for budget in (512, 256, 128):
    text = refine_inputs.refinement_input(long_question, long_program, long_feedback, codet5,
                                       budget)
    assert refine_inputs.input_tokens(text, codet5) <= budget
  text = refine_inputs.refinement_input(long_question, long_program, long_feedback, codet5, 512)
  feedback_part = text.split("\nFeedback: ")[1]
  assert feedback_part.startswith("runtime_error: NameError:") and feedback_part.endswith(" ...")
  assert len(codet5.encode(feedback_part)) <= refine_inputs.FEEDBACK_TOKENS + 2
  assert "\n    ...\nFeedback:" in text and text.split("Program:\n")[1].startswith("def solution")


def test_cli_resumes_and_reports_bad_input(records, tmp_path):
  programs = tmp_path / "programs.jsonl"
  write_programs(programs, records[:12])
  out = tmp_path / "out"
  args = [f"--programs={programs}", f"--out={out}", "--workers=1", "--progress=false"]
  first = run_module("pad_jax.refine", *args, "--limit=6", timeout=300)
  assert first.returncode == 0, first.stderr[-3000:]
  second = run_module("pad_jax.refine", *args, timeout=300)
  assert second.returncode == 0, second.stderr[-3000:]
  rows = jsonl.read_rows(out / data.ROWS_FILE)
  assert len({r["id"] for r in rows}) == len(rows)  # Nothing written twice.
  assert {r["question_id"] for r in rows} == {r.id for r in records[:12]}
  report = json.loads((out / data.REPORT_FILE).read_text())
  assert report["rows"] == len(rows) and report["source_programs"] == 12
  programs.write_text(programs.read_text() + '{"id": "x", "question": 3}\n')
  bad = run_module("pad_jax.refine", *args, timeout=300)
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines()[-1].startswith(f"error: {programs}:13: field ")
  unknown = run_module("pad_jax.refine", *args, "--operators=typo", timeout=300)
  assert unknown.returncode == 2 and "--operators: unknown 'typo'" in unknown.stderr
  helped = run_module("pad_jax.refine", "--help", timeout=300)
  assert helped.returncode in (0, 1) and "--checkpoint_dir" in helped.stdout  # absl: 1


def test_cli_resumes_after_kill_9_without_losing_or_duplicating_rows(records, tmp_path):
  programs = tmp_path / "programs.jsonl"
  write_programs(programs, records)
  whole, killed = tmp_path / "whole", tmp_path / "killed"
  args = [f"--programs={programs}", "--workers=1", "--progress=false"]
  done = run_module("pad_jax.refine", *args, f"--out={whole}", timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  proc = subprocess.Popen([PY, "-m", "pad_jax.refine", *args, f"--out={killed}"], cwd=REPO,
                          env=subprocess_env(), start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  progress = killed / data.PROGRESS_FILE
  deadline = time.monotonic() + 200
  while not (progress.exists() and progress.read_text().count("\n") >= 16):
    assert proc.poll() is None and time.monotonic() < deadline
    time.sleep(0.1)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  assert len(data.read_progress(killed)) < len(records)  # Killed mid-run.
  resumed = run_module("pad_jax.refine", *args, f"--out={killed}", timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  rows = jsonl.read_rows(killed / data.ROWS_FILE)
  assert len({r["id"] for r in rows}) == len(rows)
  assert sorted(rows, key=lambda r: r["id"]) == sorted(jsonl.read_rows(whole / data.ROWS_FILE),
                                                       key=lambda r: r["id"])


RESULTS = [  # (result, its feedback or None when inference does not refine it)
    (ExecResult("ok", 12.0, None, 0.1), None),
    (ExecResult("ok", -3.5, None, 0.1), None),
    (ExecResult("ok", None, None, 0.1), "returned None, not a number"),
    (ExecResult("runtime_error", None, "NameError: name 'x' is not defined\n(line 3: y = x)",
                0.1), "runtime_error: NameError: name 'x' is not defined (line 3: y = x)"),
    (ExecResult("bad_return", None, "returned 'abc' (not a finite number)", 0.1),
     "bad_return: returned 'abc' (not a finite number)"),
    (ExecResult("timeout", None, None, 2.0), "timeout"),
    (ExecResult("syntax_error", None, "invalid syntax (line 2)", 0.0),
     "syntax_error: invalid syntax (line 2)"),
]


def test_one_function_gives_the_trigger_and_the_feedback():
  for result, expected in RESULTS:
    assert feedback.refinement_feedback(result) == expected
    assert feedback.needs_refinement(result) == (expected is not None)
    if expected is None:
      with pytest.raises(ValueError, match="gets no refinement feedback"):
        feedback.feedback(result)
    else:
      assert feedback.feedback(result) == expected


STUDENT_PROGRAMS = {  # question id -> what the "student" wrote; the gold answer is 7.
    "right": "def solution():\n    return 7",
    "wrong_number": "def solution():\n    a = 3\n    return a * 3",
    "name_error": "def solution():\n    a = 3\n    return a + b",
    "no_number": "def solution():\n    return 'seven'",
    "not_python": "the answer is seven",
    "miscopied": "def solution():\n    a = 5\n    return a * 3",  # 5: not in the question
}
REFINED = ("name_error", "no_number", "not_python", "miscopied")


def test_student_failures_keep_only_what_inference_refines(monkeypatch, tmp_path):
  """build_student with a stand-in decoder: a wrong number is dropped (counted), not taught."""
  from pad_jax.refine import student  # pylint: disable=g-import-not-at-top

  def fake_decode_file(settings, checkpoint_dir, input_path, output_path, **kwargs):
    del settings, checkpoint_dir, kwargs
    jsonl.write_rows(output_path, [{"id": r["id"], "prediction": STUDENT_PROGRAMS[r["id"]]}
                                   for r in jsonl.read_rows(input_path)])
    return {"decoded": len(STUDENT_PROGRAMS)}

  monkeypatch.setattr(student.decode_files, "decode_file", fake_decode_file)
  records = [ProgramRecord(id=q, question=f"Seven? Start from 3. ({q})", answer=7.0,
                           teacher="gold",
                           prompt_variant="gold", sample=0,
                           program="def solution():\n    return 3 + 4")
             for q in STUDENT_PROGRAMS]
  for student_round, source in ((0, "student"), (2, "student:round_2")):
    out = tmp_path / source.replace(":", "_")
    out.mkdir()
    student.build_student(records, out, "/no/checkpoint", limits=LIMITS,
                          student_round=student_round, progress=False)
    rows = refine_inputs.read_rows(out / data.ROWS_FILE)
    assert {r["question_id"] for r in rows} == set(REFINED)
    assert {r["id"] for r in rows} == {f"{q}/{source}/0" for q in REFINED}
    with LIMITS.executor() as executor:
      results = executor.run([r["program"] for r in rows])
    for row, result in zip(rows, results):
      assert "expected" not in row["feedback"] and "7" not in row["feedback"]
      assert feedback.needs_refinement(result, row["question"], row["program"])
      assert row["feedback"] == feedback.refinement_feedback(result, row["question"],
                                                             row["program"])
      assert row["source"] == source and row["target"] == records[0].program
    assert {r["question_id"]: r["feedback"] for r in rows}["miscopied"] == (
        "ungrounded_number: line 2: a = 5: 5 is not a number in the question")
    report = data.summarize(out)["by_source"][source]
    # A wrong number from givens the question contains (3 * 3) is dropped: only gold could tell.
    assert report == {"kept": 4, "discarded_still_correct": 1, "discarded_not_triggered": 1,
                      "rows": 4}


@pytest.mark.parametrize("question, program, expected", [
    ("Mia has 1,200 apples and sells 25% of them.",
     "def solution():\n    apples = 1200\n    percent = 25\n    return apples * percent / 100", None),
    ("It costs 2.5 dollars and she pays -3 less.",  # '-3' is the number 3 in the text
     "def solution():\n    price = 2.5\n    less = -3\n    return price + less", None),
    ("Max has 186 apples. He buys 61 more.",
     "def solution():\n    start = 186\n    bought = 168\n    total = start + bought\n"
     "    return total", "ungrounded_number: line 3: bought = 168: 168 is not a number in the "
     "question"),
    ("Max has 186 apples.", "def solution():\n    total = 186 * 2\n    return total", None),
    ("Max has 186 apples.", "def solution(:\n", None),  # does not parse: its run says so
])
def test_grounding_feedback_flags_a_given_the_question_does_not_contain(question, program,
                                                                        expected):
  assert feedback.grounding_feedback(question, program) == expected
