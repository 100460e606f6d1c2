"""The offline gold-rationale teacher: coverage, faithfulness, the token budget, CLI."""

import ast
import json
import re
import statistics
import subprocess
import sys
import types

import pytest
from t5x import utils

from pad_jax import answers
from pad_jax.data import benchmarks
from pad_jax.data.programs import read_programs
from pad_jax.data.programs import ProgramRecord
from pad_jax.data.programs import write_programs
from pad_jax.t5x_hooks import datasets
from pad_jax.teacher import gold
from pad_jax.teacher import rationale_text
from pad_jax.teacher import report as report_lib
from pad_jax.student.vocab import REPO_ROOT
from tasks import program_tasks

TRAIN_SIZE = 7473


@pytest.fixture(scope="module")
def train(shared_data):
  return benchmarks.load("gsm8k", "train", shared_data)


@pytest.fixture(scope="module")
def programs(train):
  """The default (concise) style."""
  return [gold.gold_program(e) for e in train]


@pytest.fixture(scope="module")
def verbose(train):
  """The verbose style, for the first 1,500 questions."""
  return [gold.gold_program(e, style="verbose") for e in train[:1500]]


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


def test_first_example_follows_the_rationale(programs, verbose):
  assert programs[0] == '''def solution():
    friends_in_april = 48
    clips_in_may = friends_in_april / 2
    clips_altogether = friends_in_april + clips_in_may
    result = clips_altogether
    return result'''
  assert verbose[0] == '''def solution():
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


def test_styles_differ_only_in_docstring_and_comments(programs, verbose):
  for concise, full in zip(programs, verbose):
    assert (concise is None) == (full is None)
    if concise is not None:
      assert ast.dump(ast.parse(concise)) == ast.dump(_without_docstring(ast.parse(full)))
      assert '"""' not in concise and "#" not in concise
  with pytest.raises(ValueError, match="style"):
    gold.gold_program(types.SimpleNamespace(question="q", rationale="1+1=2", answer=2), "terse")


def _without_docstring(tree):
  tree.body[0].body = [s for s in tree.body[0].body
                       if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
  return tree


def _feature_settings(run_file):
  """TASK_FEATURE_LENGTHS and MAX_TRUNCATED_FRACTION as a run gin file binds them."""
  text = (REPO_ROOT / "gin_configs" / run_file).read_text()
  values = {}
  for name in ("TASK_FEATURE_LENGTHS", "MAX_TRUNCATED_FRACTION"):
    values[name] = ast.literal_eval(re.search(rf"^{name} = (\{{.*\}})$", text, re.M).group(1))
  return values


def test_concise_programs_fit_codet5_small_and_pass_the_truncation_check(
    train, programs, tmp_path):
  """>= 99% of GSM8K gold programs fit 256 CodeT5 target tokens, and t5x.train's
  truncation check (runs/pad_finetune.gin's lengths, codet5_small's CodeT5
  vocabulary, `@program_task()`'s task) passes on them with no override."""
  kept = [(e, p) for e, p in zip(train, programs) if p is not None]
  lengths = report_lib.target_lengths([p for _, p in kept])
  over = sum(n > 256 for n in lengths)
  assert over / len(kept) <= 0.01, over
  assert 80 <= statistics.median(lengths) <= 100
  path = tmp_path / "programs.jsonl"
  write_programs(path, [ProgramRecord(id=e.id, question=e.question, program=p,
                                      answer=float(e.answer), teacher="gold", prompt_variant="gold", sample=0)
                        for e, p in kept])
  settings = _feature_settings("runs/pad_finetune.gin")
  assert settings["TASK_FEATURE_LENGTHS"]["targets"] == 256
  assert "pad_jax.student.vocab.CodeT5Vocabulary" in (
      REPO_ROOT / "gin_configs/models/codet5_small.gin").read_text()
  task = program_tasks.register_program_task("pad_gold_budget_test", str(path))
  for split in ("train", "validation"):  # t5x.train checks both before step 1.
    cfg = utils.DatasetConfig(mixture_or_task_name=task.name, split=split,
                              task_feature_lengths=settings["TASK_FEATURE_LENGTHS"],
                              batch_size=8, shuffle=False, seed=0)
    report = datasets.check_truncation(cfg, settings["MAX_TRUNCATED_FRACTION"])
    assert report.fraction("targets") <= 0.01


def test_question_quantities_first_and_steps_never_retype_values(verbose):
  checked = literal_steps = 0
  for program in verbose:
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


def test_comments_come_from_rationale_sentences(train, verbose):
  for example, program in list(zip(train, verbose))[:300]:
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
  assert report["target_budget"]["max_target_tokens"] == 256
  assert report["target_budget"]["over_budget"] <= 1
  assert all("#" not in r.program for r in records)  # The concise style.


def test_budget_flags_count_and_drop_programs_over_the_target_budget(tmp_path):
  common = [sys.executable, "-m", "pad_jax.synthesize", "--teacher=gold", "--limit=20",
            "--workers=1", "--progress=false", "--max_target_tokens=60"]
  counted = subprocess.run(common + [f"--out_dir={tmp_path / 'count'}"], capture_output=True,
                           timeout=120)
  assert counted.returncode == 0, counted.stderr.decode()[-2000:]
  dropped = subprocess.run(common + ["--drop_over_budget", f"--out_dir={tmp_path / 'drop'}"],
                           capture_output=True, timeout=120)
  assert dropped.returncode == 0, dropped.stderr.decode()[-2000:]
  count = json.loads((tmp_path / "count" / "report.json").read_text())
  drop = json.loads((tmp_path / "drop" / "report.json").read_text())
  over = count["target_budget"]["over_budget"]
  assert 0 < over < count["kept"] and count["target_budget"]["dropped"] == 0
  assert drop["target_budget"] == dict(count["target_budget"], dropped=over)
  records = read_programs(tmp_path / "drop" / "programs.jsonl")
  assert len(records) == drop["kept"] == count["kept"] - over
  assert max(report_lib.target_lengths([r.program for r in records])) <= 60
  assert b"over 60 target tokens" in dropped.stdout
