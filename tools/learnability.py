r"""Learnability experiments: train the tiny student with t5x, measure accuracy.

Runs `python -m t5x.train` with the given gin files (saving a checkpoint every
`--checkpoint_period` steps and noting the wall time at which each appears),
then restores every checkpoint, greedily decodes the held-out `test` split of
`pad_demo_synthetic` with the model's `predict_batch`, executes the programs
in the sandboxed executor and prints held-out execution accuracy against
step and wall time (also written to `MODEL_DIR/learnability.json`).

  python tools/learnability.py --model_dir=/tmp/learn \
    --gin_file=models/tiny.gin --gin_file=runs/demo_train.gin \
    --gin_bindings="TRAIN_STEPS=1500" --checkpoint_period=250

`--eval_only` re-evaluates an existing model dir.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any, Sequence

from absl import app
from absl import flags
import jax
import numpy as np
import seqio
import t5x
from t5x import partitioning
from t5x import utils

import tasks  # pylint: disable=unused-import  (registers pad_demo_synthetic)
from pad_jax import atomic
from pad_jax import checkpoints
from pad_jax import metrics
from pad_jax.student import model_gin
from tasks import postprocessors

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
GIN_DIR = REPO_ROOT / "gin_configs"

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "t5x model dir.",
                                 required=True)
_GIN_FILES = flags.DEFINE_multi_string(
    "gin_file", ["models/tiny.gin", "runs/demo_train.gin"],
    "gin files (relative to gin_configs/).")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [],
                                          "extra gin bindings.")
_CHECKPOINT_PERIOD = flags.DEFINE_integer("checkpoint_period", 250,
                                          "steps between checkpoints.")
_EVAL_ONLY = flags.DEFINE_bool("eval_only", False,
                               "only evaluate the checkpoints in model_dir.")
_SPLIT = flags.DEFINE_string("split", "test", "split to decode.")
_TASK = flags.DEFINE_string("task", "pad_demo_synthetic", "task to decode.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 200,
                                     "examples to decode.")
_NICE = flags.DEFINE_integer("nice", 0, "niceness of the training process.")


def train(model_dir: pathlib.Path, gin_files: Sequence[str],
          bindings: Sequence[str], checkpoint_period: int,
          nice: int = 0) -> tuple[dict[Any, float], dict[int, float]]:
  """Runs t5x.train.

  Returns:
    ({checkpoint step: wall seconds since launch, "total": ...},
     {checkpoint step: CPU seconds of the training process}).
  """
  command = [
      sys.executable, "-m", "t5x.train", f"--gin_search_paths={GIN_DIR}",
      *[f"--gin_file={f}" for f in gin_files],
      f"--gin.MODEL_DIR='{model_dir}'",
      f"--gin.utils.SaveCheckpointConfig.period={checkpoint_period}",
      "--gin.utils.SaveCheckpointConfig.keep=None",
      *[f"--gin.{b}" for b in bindings],
  ]
  if nice:
    command = ["nice", "-n", str(nice)] + command
  model_dir.mkdir(parents=True, exist_ok=True)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  times: dict[int, float] = {}
  cpu: dict[int, float] = {}
  start = time.time()
  with open(model_dir / "train.log", "w") as log:
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               env=env, cwd=REPO_ROOT)
    while process.poll() is None:
      time.sleep(1.0)
      for step in checkpoints.checkpoint_steps(model_dir):
        if step not in times:
          times[step] = round(time.time() - start, 1)
          cpu[step] = _cpu_seconds(process.pid)
  for step in checkpoints.checkpoint_steps(model_dir):
    times.setdefault(step, round(time.time() - start, 1))
  if process.returncode:
    raise RuntimeError(f"t5x.train failed ({process.returncode}); see "
                       f"{model_dir / 'train.log'}")
  times["total"] = round(time.time() - start, 1)
  return times, cpu


def _cpu_seconds(pid: int) -> float:
  """User + system CPU seconds of a running process (all its threads)."""
  try:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
  except OSError:
    return float("nan")
  utime, stime = fields.split()[11:13]
  return round((int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK"), 1)


def _model_from_gin(gin_files: Sequence[str], bindings: Sequence[str]):
  """The `MODEL` of the model gin files (no optimizer: only decoding)."""
  model_files = [f for f in gin_files if f.startswith("models/")]
  search = [str(GIN_DIR), os.path.dirname(os.path.dirname(t5x.__file__))]
  return model_gin.load_model_from_gin(model_files, bindings, search,
                                        with_optimizer=False)


def _feature_lengths(bindings: Sequence[str]) -> dict[str, int]:
  lengths = {"inputs": 64, "targets": 128}
  for binding in bindings:
    if binding.startswith("TASK_FEATURE_LENGTHS"):
      lengths = eval(binding.split("=", 1)[1])  # pylint: disable=eval-used
  return lengths


def _examples_and_batch(model, task: seqio.Task, split: str,
                        num_examples: int, lengths: dict[str, int]):
  """The first `num_examples` examples of `split` and them as one batch."""
  dataset = task.get_dataset(lengths, split=split, shuffle=False)
  examples = list(dataset.take(num_examples).as_numpy_iterator())
  converter = model.FEATURE_CONVERTER_CLS(pack=False)
  batch = next(converter(dataset.take(num_examples), lengths)
               .batch(len(examples)).as_numpy_iterator())
  return examples, {k: np.asarray(v) for k, v in batch.items()}


def _score(texts: Sequence[str], examples: Sequence[dict[str, Any]]
          ) -> dict[str, float]:
  """Execution accuracy, runnable rate and exact match of decoded programs."""
  targets = [postprocessors.postprocess(e["targets_pretokenized"],
                                       example=e, is_target=True)
             for e in examples]
  programs = [postprocessors.postprocess(t, example=e)
              for t, e in zip(texts, examples)]
  scores = metrics.execution_metrics(targets, programs)
  exact = np.mean([t == e["targets_pretokenized"].decode()
                   for t, e in zip(texts, examples)])
  return {"accuracy": scores["accuracy"],
          "runnable_rate": scores["runnable_rate"], "exact_match": float(exact)}


def evaluate(model_dir: pathlib.Path, gin_files: Sequence[str],
             bindings: Sequence[str], task_name: str, split: str,
             num_examples: int) -> list[dict[str, Any]]:
  """Decodes `split` with every checkpoint; returns accuracy rows."""
  model = _model_from_gin(gin_files, [b for b in bindings
                                      if not b.startswith("TRAIN_STEPS")])
  task = seqio.get_mixture_or_task(task_name)
  examples, batch = _examples_and_batch(model, task, split, num_examples,
                                        _feature_lengths(bindings))
  partitioner = partitioning.PjitPartitioner(num_partitions=1)
  initializer = utils.TrainStateInitializer(
      optimizer_def=None, init_fn=model.get_initial_variables,
      input_shapes={k: v.shape for k, v in batch.items()},
      input_types={k: v.dtype for k, v in batch.items()},
      partitioner=partitioner)
  predict = jax.jit(model.predict_batch)
  vocabulary = task.output_features["targets"].vocabulary
  rows = []
  for step in checkpoints.checkpoint_steps(model_dir):
    path = checkpoints.checkpoint_dir(model_dir, step)
    state, _ = utils.create_checkpoint_manager_and_restore(
        initializer, partitioner,
        utils.RestoreCheckpointConfig(path=path, mode="specific",
                                      strict=False, dtype="float32"),
        path, None, use_orbax=True)
    started = time.time()
    tokens = np.asarray(predict(state.params, batch))
    texts = [vocabulary.decode(list(t)) for t in tokens]
    rows.append({"step": step, **_score(texts, examples),
                 "decode_seconds": round(time.time() - started, 1)})
    print(json.dumps(rows[-1]), flush=True)
    wrong = [(e["inputs_pretokenized"].decode(), t) for t, e in
             zip(texts, examples) if t != e["targets_pretokenized"].decode()]
    atomic.write_json(model_dir / f"wrong_{step}.json", wrong, indent=1)
  return rows


def main(argv: Sequence[str]) -> None:
  del argv
  model_dir = pathlib.Path(_MODEL_DIR.value).resolve()
  report_path = model_dir / "learnability.json"
  report: dict[str, Any] = {}
  if report_path.exists():
    report = json.loads(report_path.read_text())
  if not _EVAL_ONLY.value:
    wall, cpu = train(model_dir, _GIN_FILES.value, _GIN_BINDINGS.value,
                      _CHECKPOINT_PERIOD.value, _NICE.value)
    report = {"gin_files": _GIN_FILES.value,
              "bindings": _GIN_BINDINGS.value,
              "checkpoint_seconds": wall, "checkpoint_cpu_seconds": cpu}
    atomic.write_json(report_path, report)
  rows = evaluate(model_dir, _GIN_FILES.value, _GIN_BINDINGS.value,
                  _TASK.value, _SPLIT.value, _NUM_EXAMPLES.value)
  seconds = {int(k): v for k, v in report.get("checkpoint_seconds", {}).items()
             if k != "total"}
  cpu = {int(k): v for k, v in report.get("checkpoint_cpu_seconds",
                                           {}).items()}
  for row in rows:
    row["wall_seconds"] = seconds.get(row["step"])
    row["cpu_seconds"] = cpu.get(row["step"])
  report["curve"] = rows
  atomic.write_json(report_path, report)
  print(f"{'step':>6} {'wall_s':>7} {'cpu_s':>7} {'accuracy':>8} "
        f"{'runnable':>8} {'exact':>6}")
  for row in rows:
    print(f"{row['step']:>6} {row['wall_seconds'] or float('nan'):>7} "
          f"{row['cpu_seconds'] or float('nan'):>7} "
          f"{row['accuracy']:>8.3f} {row['runnable_rate']:>8.3f} "
          f"{row['exact_match']:>6.3f}")


if __name__ == "__main__":
  app.run(main)
