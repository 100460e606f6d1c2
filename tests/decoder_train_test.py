"""Train and evaluate the tiny decoder-only student through t5x, end to end.

The same commands as for a T5 student (tests/train_test.py), with the
decoder model file: `python -m t5x.train` with models/tiny_decoder.gin +
runs/pad_finetune.gin on a synthetic program JSONL given as
`@program_task()`. The model file makes that task decoder-only (prompt
`question\\n`, target `program <eos>`, tasks/decoder_tasks.py); t5x's
DecoderOnlyModel packs both into one prefix-LM sequence and its
`predict_batch` decodes after the prompt for the validation (executing the
decoded programs). One module-scoped run is checked for checkpoints and
metrics and is the uninterrupted reference of the kill -9 / restart test;
`python -m t5x.eval` scores its checkpoint on the task's validation split.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pad_jax.t5x_hooks import early_stopping
import train_testlib as tl

STEPS = 8
PERIOD = 4
TASK = "pad_decoder_train_test"
FEATURE_LENGTHS = "{'inputs': 64, 'targets': 128}"
DECODER_GIN = "models/tiny_decoder.gin"


def train_argv(model_dir: pathlib.Path, jsonl: pathlib.Path) -> list[str]:
  """`python -m t5x.train` of the decoder student on a program JSONL."""
  return [
      sys.executable, "-m", "t5x.train",
      "--gin_search_paths=gin_configs",
      f"--gin_file={DECODER_GIN}",
      "--gin_file=runs/pad_finetune.gin",
      "--gin.MIXTURE_OR_TASK_NAME=@program_task()",
      f"--gin.program_task.jsonl_path='{jsonl}'",
      f"--gin.program_task.name='{TASK}'",
      f"--gin.MODEL_DIR='{model_dir}'",
      f"--gin.TRAIN_STEPS={STEPS}",
      f"--gin.EVAL_PERIOD={PERIOD}",
      "--gin.EVAL_STEPS=2",
      "--gin.WARMUP_STEPS=2",
      "--gin.LEARNING_RATE=1e-3",
      f"--gin.TASK_FEATURE_LENGTHS={FEATURE_LENGTHS}",
  ]


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory):
  return tl.write_program_dataset(
      tmp_path_factory.mktemp("decoder_train") / "programs.jsonl")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, jsonl):
  model_dir = tmp_path_factory.mktemp("decoder_train") / "run"
  result = tl.run(train_argv(model_dir, jsonl), tl.subprocess_env(jsonl))
  assert result.returncode == 0, result.stderr[-4000:]
  return model_dir


def test_train_is_a_decoder_only_prefix_lm_run(trained):
  assert STEPS in tl.checkpoint_steps(trained)
  config = (trained / "config.gin").read_text()
  assert "MODEL = @models.DecoderOnlyModel()" in config
  assert "train_hooks.program_task.decoder_only = True" in config
  params = tl.load_params(trained / f"checkpoint_{STEPS}")
  assert not any("encoder" in k for k in params), sorted(params)[:5]
  train = tl.tensorboard_tags(trained / "train")
  assert "loss" in train and np.isfinite(train["loss"]).all()
  teacher_forced = tl.tensorboard_tags(trained / "training_eval" / TASK)
  assert np.isfinite(teacher_forced["loss"]).all()
  # The truncation check counted the task's own features (prompt, program).
  report = json.loads((trained / f"truncation-{TASK}-train.json").read_text())
  assert report["truncated"] == {"inputs": 0, "targets": 0}


def test_validation_decodes_after_the_prompt_and_executes(trained):
  tags = tl.tensorboard_tags(trained / "inference_eval" / TASK)
  for tag in ("eval/accuracy", "eval/runnable_rate"):
    assert len(tags[tag]) == 2, sorted(tags)
  lines = (trained / "inference_eval" /
           f"{TASK}-metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["step"] for l in lines] == [PERIOD, STEPS]
  state = early_stopping.read_early_stopping(str(trained))
  assert [s for s, _ in state["history"]] == [PERIOD, STEPS]
  rows = [json.loads(l) for l in (trained / "inference_eval" /
                                  f"{TASK}-{STEPS:06d}.jsonl").open()]
  assert rows and all(r["input"]["inputs_pretokenized"].endswith("\n") for r in rows)
  assert all("output" in r and "prediction" in r for r in rows)


def test_t5x_eval_scores_the_validation_split(trained, jsonl, tmp_path):
  out = tmp_path / "eval"
  argv = [
      sys.executable, "-m", "t5x.eval",
      "--gin_search_paths=gin_configs",
      f"--gin_file={DECODER_GIN}",
      "--gin_file=runs/pad_eval.gin",
      "--gin.MIXTURE_OR_TASK_NAME=@program_task()",
      f"--gin.program_task.jsonl_path='{jsonl}'",
      f"--gin.program_task.name='{TASK}'",
      "--gin.SPLIT='validation'",
      f"--gin.CHECKPOINT_PATH='{trained / f'checkpoint_{STEPS}'}'",
      f"--gin.EVAL_OUTPUT_DIR='{out}'",
      "--gin.BATCH_SIZE=8",
      f"--gin.TASK_FEATURE_LENGTHS={FEATURE_LENGTHS}",
  ]
  result = tl.run(argv, tl.subprocess_env(jsonl))
  assert result.returncode == 0, result.stderr[-4000:]
  tags = tl.tensorboard_tags(out / "inference_eval" / TASK)
  assert "eval/accuracy" in tags and "eval/runnable_rate" in tags, sorted(tags)


def _wait_for_checkpoint(proc, model_dir, step, timeout=300):
  marker = model_dir / f"checkpoint_{step}" / "commit_success.txt"
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if marker.exists():
      return True
    time.sleep(0.05)
  return marker.exists()


@pytest.mark.slow  # the T5 twin (tests/train_test.py) runs by default; this one: -m slow
def test_kill9_and_restart_ends_with_identical_parameters(
    trained, jsonl, tmp_path):
  """SIGKILL after the step-4 checkpoint, same command again: same params.

  The uninterrupted run is the `trained` fixture (identical command line);
  dropout is on (runs/pad_finetune.gin) and the data order is a seeded
  shuffle.
  """
  killed = tmp_path / "run"
  argv = train_argv(killed, jsonl)
  env = tl.subprocess_env(jsonl)
  log = tmp_path / "killed.log"
  with open(log, "w") as stderr:  # A pipe would fill up and block t5x.
    proc = subprocess.Popen(argv, cwd=tl.REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=stderr)
    try:
      reached = _wait_for_checkpoint(proc, killed, PERIOD)
      assert reached, f"no checkpoint_{PERIOD}: {log.read_text()[-4000:]}"
      os.kill(proc.pid, signal.SIGKILL)
      proc.wait(timeout=60)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  assert proc.returncode == -signal.SIGKILL
  steps_at_kill = tl.checkpoint_steps(killed)
  assert PERIOD in steps_at_kill and STEPS not in steps_at_kill

  result = tl.run(argv, env)  # The same command again.
  assert result.returncode == 0, result.stderr[-4000:]
  assert f"Starting main loop over steps {max(steps_at_kill)}-{STEPS}" in \
      result.stderr, result.stderr[-4000:]

  a = tl.load_params(trained / f"checkpoint_{STEPS}")
  b = tl.load_params(killed / f"checkpoint_{STEPS}")
  assert a.keys() == b.keys()
  different = [k for k in a if not np.array_equal(a[k], b[k])]
  assert not different, different
  # Not vacuous: training moved the parameters away from the step-0 ones.
  first = tl.load_params(trained / "checkpoint_0")
  assert any(not np.array_equal(a[k], first[k]) for k in a if "target" in k)
  state = early_stopping.read_early_stopping(str(killed))
  assert state["history"][-1][0] == STEPS
