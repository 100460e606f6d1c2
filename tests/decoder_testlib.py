"""Shared helper of the decoder-only tests: a tiny student trained by t5x.train.

`train` runs the command a user types (`python -m t5x.train` with
models/tiny_decoder.gin + runs/pad_finetune.gin, the program task of a
synthetic JSONL) in a subprocess and returns its MODEL_DIR, whose
`config.gin` defines the model for `pad_jax.infer` and `pad_jax.export_hf`.
"""

from __future__ import annotations

import pathlib
import sys

import train_testlib as tl

DECODER_GIN = "models/tiny_decoder.gin"
# conftest's session fixture `tiny_decoder_student`: its steps and prompt length.
STEPS = 60
MAX_INPUT = 64


def train(tmp: pathlib.Path, task: str, steps: int, max_input: int = 64,
          **macros: object) -> tuple[pathlib.Path, dict]:
  """(MODEL_DIR, env) of a short t5x.train run of the tiny decoder student.

  Args:
    tmp: a fresh directory (gets `programs.jsonl` and `run/`).
    task: the program task's name.
    steps: TRAIN_STEPS (also the eval period: one eval, at the end).
    max_input: the prompt length of TASK_FEATURE_LENGTHS (targets: 128).
    **macros: more `--gin.KEY=VALUE` bindings (values as gin text).
  """
  jsonl = tl.write_program_dataset(tmp / "programs.jsonl", n=90)
  model_dir = tmp / "run"
  bindings = {
      "MIXTURE_OR_TASK_NAME": "@program_task()",
      "program_task.jsonl_path": f"'{jsonl}'",
      "program_task.name": f"'{task}'",
      "MODEL_DIR": f"'{model_dir}'",
      "TRAIN_STEPS": steps, "EVAL_PERIOD": steps, "EVAL_STEPS": 1,
      "EVALUATOR_NUM_EXAMPLES": 2, "WARMUP_STEPS": 5, "LEARNING_RATE": 3e-3,
      "DROPOUT_RATE": 0.0,
      "TASK_FEATURE_LENGTHS": f"{{'inputs': {max_input}, 'targets': 128}}",
      **macros}
  argv = [sys.executable, "-m", "t5x.train", "--gin_search_paths=gin_configs",
          f"--gin_file={DECODER_GIN}", "--gin_file=runs/pad_finetune.gin"]
  argv += [f"--gin.{key}={value}" for key, value in bindings.items()]
  env = tl.subprocess_env(jsonl)
  result = tl.run(argv, env)
  assert result.returncode == 0, result.stderr[-4000:]
  return model_dir, env
