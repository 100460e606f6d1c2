"""Shared helpers of the training tests: run t5x.train / t5x.eval for real.

The tests drive the same commands a user types (`python -m t5x.train` with
models/tiny.gin + runs/pad_finetune.gin) in subprocesses, on a small program
task registered by tests/testdata/train_test_tasks.py.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Mapping, Optional, Sequence

import numpy as np

from pad_jax import checkpoints

REPO = pathlib.Path(__file__).resolve().parents[1]
TESTDATA = REPO / "tests" / "testdata"
TASK = "pad_train_test"
EVAL_TASK = "pad_eval_singleop_demo"
FEATURE_LENGTHS = "{'inputs': 64, 'targets': 128}"


def write_program_dataset(path: pathlib.Path, n: int = 90) -> pathlib.Path:
  """Writes `n` synthetic question/program records as a program dataset."""
  from pad_jax.data import programs  # pylint: disable=g-import-not-at-top
  from pad_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  programs.write_programs(path, synthetic.generate("train", n, seed=0))
  return path


def subprocess_env(jsonl: pathlib.Path, devices: int = 1,
                   extra: Optional[Mapping[str, str]] = None) -> dict:
  env = dict(os.environ)
  env.update({
      "JAX_PLATFORMS": "cpu",
      "TF_CPP_MIN_LOG_LEVEL": "3",
      "PYTHONPATH": os.pathsep.join(
          [str(TESTDATA), str(REPO), env.get("PYTHONPATH", "")]),
      "PAD_TRAIN_TEST_JSONL": str(jsonl),
  })
  env.pop("XLA_FLAGS", None)
  if devices > 1:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env.update(extra or {})
  return env


def train_argv(model_dir: pathlib.Path, steps: int, eval_period: int,
               extra: Sequence[str] = (),
               jsonl: Optional[pathlib.Path] = None) -> list[str]:
  """The `python -m t5x.train` command line of the tests.

  Args:
    model_dir: MODEL_DIR.
    steps: TRAIN_STEPS.
    eval_period: EVAL_PERIOD (also the checkpoint period).
    extra: more flags.
    jsonl: train on this program dataset through `@program_task()` (as a
      user would) instead of the task of tests/testdata/train_test_tasks.py.

  Returns:
    argv.
  """
  if jsonl:
    task_flags = ["--gin.MIXTURE_OR_TASK_NAME=@program_task()",
                  f"--gin.program_task.jsonl_path='{jsonl}'",
                  f"--gin.program_task.name='{TASK}'"]
  else:
    task_flags = [f"--gin_file={TESTDATA / 'train_test_tasks.gin'}",
                  f"--gin.MIXTURE_OR_TASK_NAME='{TASK}'"]
  return [
      sys.executable, "-m", "t5x.train",
      "--gin_search_paths=gin_configs",
      "--gin_file=models/tiny.gin",
      "--gin_file=runs/pad_finetune.gin",
      *task_flags,
      f"--gin.MODEL_DIR='{model_dir}'",
      f"--gin.TRAIN_STEPS={steps}",
      f"--gin.EVAL_PERIOD={eval_period}",
      "--gin.EVAL_STEPS=2",
      "--gin.WARMUP_STEPS=2",
      "--gin.LEARNING_RATE=1e-3",
      f"--gin.TASK_FEATURE_LENGTHS={FEATURE_LENGTHS}",
      *extra,
  ]


def eval_argv(checkpoint: pathlib.Path, output_dir: pathlib.Path,
              task: str = EVAL_TASK, num_examples: int = 8,
              extra: Sequence[str] = ()) -> list[str]:
  """The `python -m t5x.eval` command line of the tests."""
  return [
      sys.executable, "-m", "t5x.eval",
      "--gin_search_paths=gin_configs",
      "--gin_file=models/tiny.gin",
      "--gin_file=runs/pad_eval.gin",
      f"--gin_file={TESTDATA / 'train_test_tasks.gin'}",
      f"--gin.CHECKPOINT_PATH='{checkpoint}'",
      f"--gin.EVAL_OUTPUT_DIR='{output_dir}'",
      f"--gin.MIXTURE_OR_TASK_NAME='{task}'",
      f"--gin.EVALUATOR_NUM_EXAMPLES={num_examples}",
      "--gin.BATCH_SIZE=8",
      f"--gin.TASK_FEATURE_LENGTHS={FEATURE_LENGTHS}",
      *extra,
  ]


def run(argv: Sequence[str], env: Mapping[str, str],
        timeout: float = 850) -> subprocess.CompletedProcess:
  return subprocess.run(
      list(argv), cwd=REPO, env=dict(env), capture_output=True, text=True,
      timeout=timeout, check=False)


def load_params(checkpoint_dir: pathlib.Path) -> dict[str, np.ndarray]:
  """Every array of a t5x Orbax checkpoint (params and optimizer state)."""
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from etils import epath  # pylint: disable=g-import-not-at-top
  path = epath.Path(checkpoint_dir / "state")
  checkpointer = ocp.PyTreeCheckpointer()
  meta = checkpointer.metadata(path)
  meta = getattr(meta, "item_metadata", meta)
  meta = getattr(meta, "tree", meta)
  # As numpy: the checkpoint may come from a mesh this process does not have.
  restore_args = jax.tree_util.tree_map(
      lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)
  tree = checkpointer.restore(path, restore_args=restore_args)
  return {
      jax.tree_util.keystr(path): np.asarray(leaf)
      for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def checkpoint_steps(model_dir: pathlib.Path) -> list[int]:
  """Steps of the finished checkpoints (`pad_jax.checkpoints`' rule)."""
  return checkpoints.checkpoint_steps(model_dir)


def tensorboard_tags(event_dir: pathlib.Path) -> dict[str, list[float]]:
  """{tag: [values...]} of the TensorBoard event files in `event_dir`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  values: dict[str, list[float]] = {}
  for path in sorted(event_dir.glob("events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for v in event.summary.value:
        if v.HasField("tensor"):
          value = tf.make_ndarray(v.tensor)
          if value.dtype.kind in "fiu" and value.size == 1:
            values.setdefault(v.tag, []).append(float(value))
  return values
