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
import re
import subprocess
import sys
import time
from typing import Any, Optional, Sequence

from absl import app
from absl import flags

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
      for step in _checkpoint_steps(model_dir):
        if step not in times:
          times[step] = round(time.time() - start, 1)
          cpu[step] = _cpu_seconds(process.pid)
  for step in _checkpoint_steps(model_dir):
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


def _checkpoint_steps(model_dir: pathlib.Path) -> list[int]:
  steps = []
  for path in model_dir.glob("checkpoint_*"):
    match = re.fullmatch(r"checkpoint_(\d+)", path.name)
    if match and not path.name.endswith(".tmp"):
      steps.append(int(match.group(1)))
  return sorted(steps)


def _model_from_gin(gin_files: Sequence[str], bindings: Sequence[str]):
  """Parses the gin files and returns their `MODEL`."""
  import gin  # pylint: disable=g-import-not-at-top
  import t5x  # pylint: disable=g-import-not-at-top

  gin.add_config_file_search_path(str(GIN_DIR))
  gin.add_config_file_search_path(
      os.path.dirname(os.path.dirname(t5x.__file__)))
  model_files = [f for f in gin_files if f.startswith("models/")]
  gin.parse_config_files_and_bindings(model_files, list(bindings),
                                      finalize_config=False)
  configurable = gin.external_configurable(_identity, "learnability_model")
  gin.parse_config("learnability_model.value = %MODEL")
  gin.finalize()
  return configurable()


def _identity(value: Any = None) -> Any:
  return value


def evaluate(model_dir: pathlib.Path, gin_files: Sequence[str],
             bindings: Sequence[str], task_name: str, split: str,
             num_examples: int) -> list[dict[str, Any]]:
  """Decodes `split` with every checkpoint; returns accuracy rows."""
  import gin  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import seqio  # pylint: disable=g-import-not-at-top
  from t5x import partitioning  # pylint: disable=g-import-not-at-top
  from t5x import utils  # pylint: disable=g-import-not-at-top

  import tasks  # pylint: disable=g-import-not-at-top,unused-import
  from pad_jax import metrics  # pylint: disable=g-import-not-at-top
  from tasks import postprocessors  # pylint: disable=g-import-not-at-top

  model = _model_from_gin(gin_files, [b for b in bindings
                                      if not b.startswith("TRAIN_STEPS")])
  lengths = {"inputs": 64, "targets": 128}
  for binding in bindings:
    if binding.startswith("TASK_FEATURE_LENGTHS"):
      lengths = eval(binding.split("=", 1)[1])  # pylint: disable=eval-used
  task = seqio.get_mixture_or_task(task_name)
  dataset = task.get_dataset(lengths, split=split, shuffle=False)
  examples = list(dataset.take(num_examples).as_numpy_iterator())
  converter = model.FEATURE_CONVERTER_CLS(pack=False)
  batch = next(converter(dataset.take(num_examples), lengths)
               .batch(len(examples)).as_numpy_iterator())
  batch = {k: np.asarray(v) for k, v in batch.items()}
  partitioner = partitioning.PjitPartitioner(num_partitions=1)
  initializer = utils.TrainStateInitializer(
      optimizer_def=None, init_fn=model.get_initial_variables,
      input_shapes={k: v.shape for k, v in batch.items()},
      input_types={k: v.dtype for k, v in batch.items()},
      partitioner=partitioner)
  predict = jax.jit(model.predict_batch)
  vocabulary = task.output_features["targets"].vocabulary
  targets = [postprocessors.extract_program(e["targets_pretokenized"],
                                            example=e, is_target=True)
             for e in examples]
  rows = []
  for step in _checkpoint_steps(model_dir):
    path = str(model_dir / f"checkpoint_{step}")
    state, _ = utils.create_checkpoint_manager_and_restore(
        initializer, partitioner,
        utils.RestoreCheckpointConfig(path=path, mode="specific",
                                      strict=False, dtype="float32"),
        path, None, use_orbax=True)
    started = time.time()
    tokens = np.asarray(predict(state.params, batch))
    texts = [vocabulary.decode(list(t)) for t in tokens]
    programs = [postprocessors.extract_program(t, example=e)
                for t, e in zip(texts, examples)]
    scores = metrics.execution_metrics(targets, programs)
    exact = np.mean([t == e["targets_pretokenized"].decode()
                     for t, e in zip(texts, examples)])
    rows.append({"step": step, "accuracy": scores["accuracy"],
                 "runnable_rate": scores["runnable_rate"],
                 "exact_match": float(exact),
                 "decode_seconds": round(time.time() - started, 1)})
    print(json.dumps(rows[-1]), flush=True)
    wrong = [(e["inputs_pretokenized"].decode(), t) for t, e in
             zip(texts, examples) if t != e["targets_pretokenized"].decode()]
    (model_dir / f"wrong_{step}.json").write_text(json.dumps(wrong, indent=1))
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
    report_path.write_text(json.dumps(report, indent=2))
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
  report_path.write_text(json.dumps(report, indent=2))
  print(f"{'step':>6} {'wall_s':>7} {'cpu_s':>7} {'accuracy':>8} "
        f"{'runnable':>8} {'exact':>6}")
  for row in rows:
    print(f"{row['step']:>6} {row['wall_seconds'] or float('nan'):>7} "
          f"{row['cpu_seconds'] or float('nan'):>7} "
          f"{row['accuracy']:>8.3f} {row['runnable_rate']:>8.3f} "
          f"{row['exact_match']:>6.3f}")


if __name__ == "__main__":
  sys.path.insert(0, str(REPO_ROOT))
  app.run(main)
