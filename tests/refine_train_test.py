"""Self-refinement end to end on models/tiny.gin, with the real commands.

PaD fine-tuning (2 steps of `python -m t5x.train`), refinement data from
mutants and from that student's own failures (`python -m pad_jax.refine
--checkpoint_dir`), 2 steps of `python -m t5x.train` with
`runs/pad_refine.gin` continuing from the PaD checkpoint on the mixture, and
`python -m pad_jax.infer --refine_rounds=1` on the result.
"""

import json
import sys

import pytest

from pad_jax import checkpoints
from pad_jax import jsonl
from pad_jax.data import refine_inputs
from pad_jax.refine import data
from pad_jax.decoding import refine_loop as loop
import train_testlib as tl


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("refine_e2e")
  programs = tl.write_program_dataset(tmp / "programs.jsonl", n=40)
  env = tl.subprocess_env(programs)
  pad_dir = tmp / "pad"
  result = tl.run(tl.train_argv(pad_dir, 2, 2, jsonl=programs, extra=[
      "--gin.EVAL_STEPS=1", "--gin.EVALUATOR_NUM_EXAMPLES=2"]), env)
  assert result.returncode == 0, result.stderr[-4000:]
  refine_out = tmp / "refine"
  result = tl.run([sys.executable, "-m", "pad_jax.refine", f"--programs={programs}",
                   f"--out={refine_out}", f"--checkpoint_dir={pad_dir}", "--workers=1",
                   "--max_decode_length=24", "--progress=false"], env)
  assert result.returncode == 0, result.stderr[-4000:]
  refine_dir = tmp / "refine_run"
  result = tl.run([
      sys.executable, "-m", "t5x.train", "--gin_search_paths=gin_configs",
      "--gin_file=models/tiny.gin", "--gin_file=runs/pad_refine.gin",
      f"--gin.MODEL_DIR='{refine_dir}'", f"--gin.INITIAL_CHECKPOINT_PATH='{pad_dir / 'checkpoint_2'}'",
      f"--gin.REFINE_DATA='{refine_out / data.ROWS_FILE}'", f"--gin.PROGRAMS_DATA='{programs}'",
      "--gin.TRAIN_STEPS=2", "--gin.EVAL_PERIOD=2", "--gin.EVAL_STEPS=1",
      "--gin.EVALUATOR_NUM_EXAMPLES=2", "--gin.WARMUP_STEPS=1", "--gin.LEARNING_RATE=1e-3",
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 512, 'targets': 128}"], env)
  assert result.returncode == 0, result.stderr[-4000:]
  return {"tmp": tmp, "env": env, "pad": pad_dir, "refine_out": refine_out,
          "refine_dir": refine_dir, "programs": programs}


def test_refinement_data_has_mutants_and_the_students_own_failures(runs):
  rows = refine_inputs.read_rows(runs["refine_out"] / data.ROWS_FILE)
  sources = {r["source"] for r in rows}
  # Only programs inference would refine become rows (execution/feedback.py):
  # of the mutation operators, those whose mutants fail when run.
  assert "student" in sources and any(s.startswith("mutation:") for s in sources)
  assert not any("expected a different answer" in r["feedback"] for r in rows)
  student = [r for r in rows if r["source"] == "student"]
  decodes = jsonl.read_rows(runs["refine_out"] / "student_decodes.jsonl")
  # A 2-step student is wrong on (nearly) everything: each wrong decode is a row.
  assert len(student) >= len(decodes) - 2
  by_id = {str(d["id"]): d["prediction"] for d in decodes}
  assert all(r["program"] == by_id[r["question_id"]] for r in student)


def test_pad_refine_gin_continues_from_the_pad_checkpoint_on_the_mixture(runs):
  refine_dir = runs["refine_dir"]
  assert checkpoints.checkpoint_steps(refine_dir)[-1] == 2  # Steps counted afresh.
  truncation = json.loads((refine_dir / "truncation-pad_refine-train.json").read_text())
  assert truncation["truncated"]["inputs"] == 0 and truncation["examples"] > 40
  # Validation decodes the original question -> program task of the mixture.
  assert (refine_dir / "truncation-pad_refine_programs-validation.json").is_file()
  pad_params = tl.load_params(runs["pad"] / "checkpoint_2")
  refined = tl.load_params(refine_dir / "checkpoint_2")
  key = next(k for k in refined if "token_embedder" in k and "param_states" not in k)
  # Started from the PaD parameters (2 small steps away), not from a fresh init.
  assert abs(refined[key] - pad_params[key]).max() < 0.05 * abs(pad_params[key]).max()


def test_infer_refine_rounds_cli(runs, tmp_path):
  inputs = tmp_path / "in.jsonl"
  jsonl.write_rows(inputs, [{"id": f"q{i}", "question": f"Tom has {i} apples. How many?",
                             "answer": i} for i in range(3)])
  out = tmp_path / "out.jsonl"
  result = tl.run([sys.executable, "-m", "pad_jax.infer",
                   f"--checkpoint_dir={runs['refine_dir']}", f"--input={inputs}",
                   f"--output={out}", "--max_decode_length=16", "--batch_size=2",
                   "--refine_rounds=1"], runs["env"])
  assert result.returncode == 0, result.stderr[-4000:]
  summary = json.loads(result.stdout.strip().splitlines()[-1])
  rows = jsonl.read_rows(out)
  assert [r["id"] for r in rows] == ["q0", "q1", "q2"]
  assert all(1 <= len(r["rounds"]) <= 2 and r["prediction"] == r["rounds"][-1]["prediction"]
             for r in rows)
  report = json.loads(open(loop.paths(str(out))["report"]).read())
  assert summary["refine"] == report and report["per_round"][0]["attempted"] == 3
  assert "| round | attempted |" in result.stderr
