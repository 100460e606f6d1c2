"""The refine stage's rounds (PaD's iterated self-refinement): config, resume, a real 2-round run.

The end-to-end test trains the tiny PaD student for 2 steps with
`python -m t5x.train`, then runs the pipeline's refine stage
(`refine_stage.run`, its real children: `python -m pad_jax.refine` and
`python -m t5x.train`) with `RefineConfig.rounds=2`, interrupts it in round
2's training, and runs it again: round 1 is not redone, round 2 resumes.
"""

import json

import pytest
import tqdm

from pad_jax import checkpoints
from pad_jax import jsonl
from pad_jax.data import refine_inputs
from pad_jax.errors import ConfigError
from pad_jax.execution.limits import ExecLimits
from pad_jax.pipeline import configs
from pad_jax.pipeline import refine_stage
from pad_jax.pipeline import run_dir as run_dir_lib
from pad_jax.pipeline.stage import StageContext
from pad_jax.refine import data
import train_testlib as tl


def test_rounds_is_checked_before_the_first_stage():
  configs.RefineConfig(rounds=3).validate()
  for kwargs, message in [
      (dict(rounds=0), "RefineConfig.rounds: must be an integer >= 1, got 0"),
      (dict(rounds=1.5), "RefineConfig.rounds: must be an integer >= 1"),
      (dict(rounds=True), "RefineConfig.rounds: must be an integer >= 1"),
      (dict(rounds=2, student_failures=False),
       "RefineConfig.rounds: is > 1 but student_failures is False"),
  ]:
    with pytest.raises(ConfigError, match="^" + message):
      configs.RefineConfig(**kwargs).validate()
  assert configs.RefineConfig().rounds == 1  # Existing configs: one round, as before.


def test_round_data_commands(tmp_path):
  cfg = configs.RefineConfig(rounds=3, per_operator=2, batch_size=4, max_decode_length=64)
  trained = {"checkpoint_dir": "/m/checkpoint_30", "model_gin_files": ["/g/model0_tiny.gin"]}
  limits = {"limits": ExecLimits(workers=1)}
  first = refine_stage.refine_data_command(cfg, limits, tmp_path / "s.jsonl", tmp_path / "d",
                                           trained)
  for flag in ("--per_operator=2", "--checkpoint_dir=/m/checkpoint_30", "--student_round=0"):
    assert flag in first, flag
  later = refine_stage.refine_data_command(cfg, limits, tmp_path / "s.jsonl", tmp_path / "d",
                                           trained, 3, "/r/round_2/model/checkpoint_4")
  for flag in ("--per_operator=0", "--checkpoint_dir=/r/round_2/model/checkpoint_4",
               "--student_round=2", "--gin_file=/g/model0_tiny.gin", "--batch_size=4"):
    assert flag in later, flag


def test_finished_rounds_are_not_redone_and_an_interrupted_round_resumes(tmp_path):
  calls = []

  def one_round(number, directory, checkpoint):
    calls.append((number, directory.name, checkpoint))
    (directory / "work").write_text("partial")  # What the round resumes from.
    if number == 2 and len(calls) == 2:
      raise KeyboardInterrupt  # Killed during round 2.
    return {"checkpoint_dir": f"{directory}/model/checkpoint_{number}"}

  with pytest.raises(KeyboardInterrupt):
    refine_stage.run_rounds(3, tmp_path, "/train/checkpoint_10", one_round)
  assert (tmp_path / "round_1" / refine_stage.ROUND_DONE).exists()
  assert not (tmp_path / "round_2" / refine_stage.ROUND_DONE).exists()
  summaries = refine_stage.run_rounds(3, tmp_path, "/train/checkpoint_10", one_round)
  # Round 1 ran once; round 2 ran again (it resumes its partial outputs), then round 3.
  assert calls == [(1, "round_1", "/train/checkpoint_10"),
                   (2, "round_2", f"{tmp_path}/round_1/model/checkpoint_1"),
                   (2, "round_2", f"{tmp_path}/round_1/model/checkpoint_1"),
                   (3, "round_3", f"{tmp_path}/round_2/model/checkpoint_2")]
  assert [s["round"] for s in summaries] == [1, 2, 3]
  assert summaries[2]["from_checkpoint"] == summaries[1]["checkpoint_dir"]
  assert refine_stage.run_rounds(3, tmp_path, "/train/checkpoint_10", one_round) == summaries
  assert len(calls) == 4  # A finished stage's rounds are all read back.


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A run directory whose train stage holds a 2-step tiny PaD student."""
  root = tmp_path_factory.mktemp("rounds") / "run"
  train_dir = root / "train"
  (train_dir / "data").mkdir(parents=True)
  programs = tl.write_program_dataset(train_dir / "data" / "synthetic.jsonl", n=40)
  env = tl.subprocess_env(programs)
  result = tl.run(tl.train_argv(train_dir / "model", 2, 2, jsonl=programs, extra=[
      "--gin.EVAL_STEPS=1", "--gin.EVALUATOR_NUM_EXAMPLES=2"]), env)
  assert result.returncode == 0, result.stderr[-4000:]
  summary = {"checkpoint_dir": str(train_dir / "model" / "checkpoint_2"),
             "model_gin_files": [str(tl.REPO / "gin_configs" / "models" / "tiny.gin")],
             "gin_search_paths": [str(tl.REPO / "gin_configs")], "vocab_dir": None}
  return root, summary


def _stage(root, summary, rounds):
  stage_configs = {
      "refine": configs.RefineConfig(
          rounds=rounds, limit=8, operators=["undefined_name", "wrong_operator"],
          run_gin_files=["runs/pad_refine.gin", "runs/demo_refine.gin"], train_steps=2,
          max_decode_length=24, batch_size=8,
          macros={"EVAL_STEPS": 1, "EVALUATOR_NUM_EXAMPLES": 2, "BATCH_SIZE": 8,
                  "WARMUP_STEPS": 1}),
      "train": configs.TrainConfig(model_gin_files=["models/tiny.gin"],
                                   env={"JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}),
      "limits": ExecLimits(workers=1),
  }
  for cfg in stage_configs.values():
    cfg.validate()
  run = run_dir_lib.RunDir(root)
  ctx = StageContext(run=run, stage_dir=run.stage_dir("refine"),
                     bar=lambda total=None, unit="it", desc_suffix=None: tqdm.tqdm(
                         total=total, disable=True))
  ctx.stage_dir.mkdir(parents=True, exist_ok=True)
  return lambda: refine_stage.run(ctx, stage_configs, {"train": {"summary": summary}})


@pytest.mark.slow  # ~90 s; the refine stage trains for real in tests/refine_train_test.py, resuming is tested above
def test_two_rounds_continue_the_student_and_resume_after_an_interrupted_round(
    trained, monkeypatch):
  root, summary = trained
  stage = root / "refine"
  real_train = refine_stage._round_train  # pylint: disable=protected-access

  def interrupted(ctx, cfg, train_cfg, trained_summary, number, directory, checkpoint):
    if number == 2:
      raise KeyboardInterrupt  # Killed once round 2's data is written.
    return real_train(ctx, cfg, train_cfg, trained_summary, number, directory, checkpoint)

  monkeypatch.setattr(refine_stage, "_round_train", interrupted)
  with pytest.raises(KeyboardInterrupt):
    _stage(root, summary, rounds=2)()
  round_1, round_2 = refine_stage.round_dir(stage, 1), refine_stage.round_dir(stage, 2)
  done_1 = (round_1 / refine_stage.ROUND_DONE).read_text()
  decodes_2 = jsonl.read_rows(round_2 / "data" / "student_decodes.jsonl")
  assert not (round_2 / refine_stage.ROUND_DONE).exists() and len(decodes_2) == 8
  monkeypatch.setattr(refine_stage, "_round_train", real_train)
  result = _stage(root, summary, rounds=2)()

  # Round 1 was not redone; round 2 resumed: its questions were not decoded again.
  assert (round_1 / refine_stage.ROUND_DONE).read_text() == done_1
  assert jsonl.read_rows(round_2 / "data" / "student_decodes.jsonl") == decodes_2
  rounds = result["rounds"]
  assert [r["round"] for r in rounds] == [1, 2]
  # Round 1 continues the PaD student, round 2 round 1's student.
  assert rounds[0]["from_checkpoint"] == summary["checkpoint_dir"]
  assert rounds[1]["from_checkpoint"] == rounds[0]["checkpoint_dir"]
  assert rounds[0]["checkpoint_dir"] == str(round_1 / "model" / "checkpoint_2")
  assert result["checkpoint_dir"] == rounds[1]["checkpoint_dir"] == str(
      round_2 / "model" / "checkpoint_2")
  assert checkpoints.checkpoint_steps(round_2 / "model")[-1] == 2  # Counted afresh.
  gin_2 = (round_2 / "refine.gin").read_text()
  assert f'INITIAL_CHECKPOINT_PATH = "{rounds[0]["checkpoint_dir"]}"' in gin_2
  assert f'REFINE_DATA = "{round_2 / data.ROWS_FILE}"' in gin_2

  # Round 1: mutants + the PaD student's failures; round 2: round 1's student's only.
  rows_1 = refine_inputs.read_rows(round_1 / "data" / data.ROWS_FILE)
  rows_2 = refine_inputs.read_rows(round_2 / "data" / data.ROWS_FILE)
  assert {r["source"] for r in rows_1} >= {"mutation:undefined_name", "student"}
  assert rows_2 and {r["source"] for r in rows_2} == {"student:round_1"}
  by_id = {str(d["id"]): d["prediction"] for d in decodes_2}
  assert all(r["program"] == by_id[r["question_id"]] for r in rows_2)
  # The round-2 mixture holds both rounds' rows, ids unique.
  mixture = refine_inputs.read_rows(round_2 / data.ROWS_FILE)
  assert mixture == rows_1 + rows_2 and len({r["id"] for r in mixture}) == len(mixture)
  assert result["refinement_rows"] == len(mixture) == rounds[1]["refinement_rows"]
  assert rounds[1]["new_rows"] == len(rows_2)
  # No row carries gold-derived feedback; wrong numbers were dropped and counted.
  # (A SyntaxError's own message may say "expected ':'".)
  assert all("expected a different answer" not in r["feedback"] for r in mixture)
  assert all(r["status"] != "ok" for r in mixture)
  report_1 = rounds[0]["data_report"]
  assert report_1["by_source"]["mutation:wrong_operator"]["discarded_not_triggered"] > 0
  assert json.loads((round_2 / refine_stage.ROUND_DONE).read_text()) == rounds[1]
  assert (round_2 / "curves.json").is_file()
