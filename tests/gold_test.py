"""The offline gold-rationale teacher: coverage, faithfulness to the rationale, CLI."""

import ast
import json
import subprocess
import sys
import types

import pytest

from pad_jax import answers
from pad_jax.data import benchmarks
from pad_jax.data.programs import read_programs
from pad_jax.teacher import gold
from pad_jax.teacher import rationale_text

TRAIN_SIZE = 7473


@pytest.fixture(scope="module")
def train(shared_data):
  return benchmarks.load("gsm8k", "train", shared_data)


@pytest.fixture(scope="module")
def programs(train):
  return [gold.gold_program(e) for e in train]


def _run(program):
  namespace = {}
  exec(compile(program, "<gold>", "exec"), namespace)  # Generated from dataset arithmetic only.
  return namespace["solution"]()


def test_coverage_of_gsm8k_train_is_at_least_95_percent(train, programs):
  assert len(train) == TRAIN_SIZE
  produced = [(e, p) for e, p in zip(train, programs) if p is not None]
  correct = sum(answers.answers_match(_run(p), e.answer, "strict") for e, p in produced)
  assert correct == len(produced)  # Every program it writes is right...
  assert correct / TRAIN_SIZE >= 0.95, correct  # ...and it writes one for >= 95%.


def test_first_example_follows_the_rationale(train, programs):
  assert programs[0] == '''def solution():
    """Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?"""
    friends_in_april = 48
    # Natalia sold 48/2 = 24 clips in May.
    clips_in_may = friends_in_april / 2
    # Natalia sold 48+24 = 72 clips altogether in April and May.
    clips_altogether = friends_in_april + clips_in_may
    result = clips_altogether
    return result'''


def _steps(program):
  function = ast.parse(program).body[0]
  return [s for s in function.body if isinstance(s, ast.Assign)]


def test_question_quantities_first_and_steps_never_retype_values(programs):
  checked = literal_steps = 0
  for program in programs[:1500]:
    if program is None:
      continue
    lines = program.splitlines()
    first_comment = next(i for i, l in enumerate(lines) if l.strip().startswith("#"))
    before = [l for l in lines[2:first_comment]]
    # Question quantities are bound first, to literals.
    assert all(isinstance(ast.parse(l.strip()).body[0].value, ast.Constant) for l in before)
    steps = _steps(program)[len(before):-1]  # Computed steps (not `result = ...`).
    namespace, known = {}, []
    for line in before:
      exec(line.strip(), {}, namespace)  # `name = 48`.
    known = list(namespace.values())
    for step in steps:
      value = eval(compile(ast.Expression(step.value), "<step>", "eval"), {}, namespace)
      literal_steps += isinstance(step.value, ast.Constant)
      digits_args = {id(c.args[1]) for c in ast.walk(step.value) if isinstance(c, ast.Call)
                     and len(c.args) == 2}
      for node in ast.walk(step.value):
        if isinstance(node, ast.Constant) and id(node) not in digits_args:
          # A number an earlier step computed (or the question gave) is never retyped.
          assert not any(abs(node.value - v) < 1e-9 for v in known), (program, node.value)
      namespace[step.targets[0].id] = value
      known.append(value)
    checked += 1
  assert checked > 1400
  assert literal_steps < 0.03 * checked  # Algebra results (`x = 30`) the text solves by hand.


def test_comments_come_from_rationale_sentences(train, programs):
  for example, program in list(zip(train, programs))[:300]:
    if program is None:
      continue
    comments = [l.strip()[2:] for l in program.splitlines() if l.strip().startswith("# ")]
    assert comments
    flat = " ".join(rationale_text.MARK_RE.sub("", example.rationale).split())
    assert all(c in flat for c in comments), (program, example.rationale)


def test_rounding_text_equations_and_quirky_questions():
  example = types.SimpleNamespace(
      question='He said "split $10 three ways" \\ then? ',
      rationale=("Each gets 10 / 3 = $<<10/3=3.33>>3.33.\n"
                 "Two shares are 3.33 x 2 = $6.66\n#### 6.66"),
      answer=6.66)
  program = gold.gold_program(example)
  assert "round(" in program  # Reproduces the rationale's rounding.
  assert _run(program) == pytest.approx(6.66)
  assert gold.gold_program(types.SimpleNamespace(question="q", rationale="No numbers.",
                                                 answer=3.0)) is None
  assert gold.gold_program(types.SimpleNamespace(question="q", rationale=None, answer=3.0)) is None


def test_gold_cli_writes_verified_dataset(tmp_path):
  result = subprocess.run([sys.executable, "-m", "pad_jax.synthesize", "--teacher=gold",
                           "--benchmark=gsm8k", "--split=train", "--limit=60",
                           f"--out_dir={tmp_path}", "--workers=1", "--progress=false"],
                          capture_output=True, timeout=120)
  assert result.returncode == 0, result.stderr.decode()[-2000:]
  report = json.loads((tmp_path / "report.json").read_text())
  records = read_programs(tmp_path / "programs.jsonl")
  assert report["teacher"] == "gold" and report["questions"] == 60
  assert report["kept"] == len(records) == report["questions_with_program"] >= 57
  assert report["correct"]["strict"] == report["completions"]
  assert all(r.teacher == "gold" and r.prompt_variant == "gold" for r in records)
  assert (tmp_path / "report.png").exists()
