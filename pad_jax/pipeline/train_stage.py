"""The pipeline's train stage: real `python -m t5x.train` on the kept programs.

The stage (1) writes the training data (`train/data/<source>.jsonl`, a
seeded fraction of the verified programs grouped by question), (2) writes
`train/task.gin`, which makes the t5x child register that data as its
`MIXTURE_OR_TASK_NAME` (see `tasks/pipeline_tasks.py`; with the decoder-only
layout of `tasks/decoder_tasks.py` when the model files' `MODEL` is t5x's
`DecoderOnlyModel`, `TrainConfig.decoder_only()`), (3) runs t5x with the
model gin file + run gin file + task.gin, streaming its log into a progress
bar (step, loss) (with `TrainConfig.use_cached_tasks`, or from
`cache_min_examples` programs on, the data is first cached by seqio's
`cache_tasks_main` into `train/seqio_cache/` and t5x reads that cache with no
tokenization at start-up, docs/scaling.md), and (4) reads the TensorBoard event files t5x wrote into
`train/curves.json` (every scalar: train loss/accuracy, validation loss and
accuracy, execution metrics of inference evals).

A killed stage resumes: t5x restores the latest checkpoint in
`train/model/` by itself; the data and task files are rewritten identically,
and the model/run gin files are the copies taken when the stage first
started (`train/gin/`), which the decode stage uses too.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import pathlib
import random
import re
import shutil
import struct
from typing import Any, Mapping, Optional, Sequence

from absl import logging

from pad_jax import atomic
from pad_jax import checkpoints
from pad_jax import jsonl
from pad_jax.data import benchmarks
from pad_jax.data import programs as programs_lib
from pad_jax.pipeline import child
from pad_jax.pipeline.configs import REPO_ROOT, TrainConfig
from pad_jax.pipeline.stage import StageContext, StageError
from tasks import cached_program_tasks
from tasks import cot_tasks

def select_training_data(records: Sequence[Any], cfg: TrainConfig) -> dict[str, list[Any]]:
  """Groups verified records by source, keeping `data_fraction` of the questions.

  The choice is made per question (all programs of a kept question are kept)
  from a seeded shuffle of the question ids, so fraction f1 < f2 keeps a
  subset of what f2 keeps: the data-efficiency curve is nested.
  """
  by_source: dict[str, list[Any]] = collections.defaultdict(list)
  for record in records:
    if cfg.sources is None or record.teacher in cfg.sources:
      by_source[record.teacher].append(record)
  if not by_source:
    raise StageError(f"no verified program comes from TrainConfig.sources={list(cfg.sources)}")
  selected = {}
  for source, rows in sorted(by_source.items()):
    ids = sorted({r.id for r in rows})
    random.Random(f"{cfg.data_seed}:{source}").shuffle(ids)
    keep = set(ids[:max(1, round(len(ids) * cfg.data_fraction))])
    selected[source] = [r for r in rows if r.id in keep]
  return selected


def _gin_str(value: str) -> str:
  return json.dumps(str(value))


def task_gin(name: str, paths: Mapping[str, str], cfg: TrainConfig, cached: bool = False,
             decoder_only: bool = False) -> str:
  """The gin file that registers the training data in the t5x child.

  `cached`: the data as `tasks.cached_program_tasks` (read from the seqio
  cache `build_cache` makes) instead of `tasks.pipeline_tasks`.
  `decoder_only`: the decoder-only (prefix LM) layout of `tasks.decoder_tasks`,
  for a `DecoderOnlyModel` student (`TrainConfig.decoder_only()`; not cached).
  """
  if cached and decoder_only:
    raise StageError("TrainConfig.use_cached_tasks: the seqio cache has no decoder-only layout")
  module, factory = (("tasks.cached_program_tasks", "cached_program_task") if cached
                     else ("tasks.pipeline_tasks", "program_task"))
  lines = ["# Written by the pad-jax pipeline: registers the training data in the t5x child.",
           "from __gin__ import dynamic_registration", f"import {module}", "",
           f"MIXTURE_OR_TASK_NAME = @{module}.{factory}()",
           f"{module}.{factory}:",
           f"  name = {_gin_str(name)}"]
  if len(paths) == 1:
    lines.append(f"  jsonl_paths = {_gin_str(next(iter(paths.values())))}")
  else:
    items = ", ".join(f"{_gin_str(k)}: {_gin_str(v)}" for k, v in sorted(paths.items()))
    lines.append(f"  jsonl_paths = {{{items}}}")
    if cfg.source_rates:
      rates = ", ".join(f"{_gin_str(k)}: {float(v)}" for k, v in sorted(cfg.source_rates.items()))
      lines.append(f"  rates = {{{rates}}}")
  if cfg.vocabulary_macro:
    lines.append(f"  vocabulary = %{cfg.vocabulary_macro}")
  lines += [f"  validation_fraction = {cfg.validation_fraction}", f"  seed = {cfg.data_seed}"]
  if not cached:
    lines.append(f"  task_format = {_gin_str(cfg.task_format)}")
  if decoder_only:
    lines.append("  decoder_only = True")
  return "\n".join(lines + [""])


def use_cache(cfg: TrainConfig, selected: Mapping[str, Sequence[Any]],
              decoder_only: bool = False) -> bool:
  """Whether the stage trains from a seqio cache (`TrainConfig.use_cached_tasks`).

  Never for a decoder-only student (the cache has the encoder-decoder layout;
  `TrainConfig.validate` refuses `use_cached_tasks=True` with one).
  """
  if cfg.task_format != "program" or decoder_only:
    return False
  if cfg.use_cached_tasks is not None:
    return bool(cfg.use_cached_tasks)
  return sum(len(rows) for rows in selected.values()) >= cfg.cache_min_examples


CACHE_MODULE = "pad_stage_cache_tasks"


def cache_module(name: str, paths: Mapping[str, str], cfg: TrainConfig,
                 model_files: Sequence[str]) -> str:
  """The module `seqio.scripts.cache_tasks_main` imports: the t5x child's task, same vocabulary."""
  jsonl_paths = next(iter(paths.values())) if len(paths) == 1 else dict(sorted(paths.items()))
  vocabulary = "_MODEL.output_vocabulary" if cfg.vocabulary_macro else "None"
  return "\n".join([
      '"""Written by the pad-jax pipeline: the train stage\'s tasks for seqio\'s cache tool."""',
      "from pad_jax.student import model_gin",
      "from tasks import cached_program_tasks", "",
      f"_MODEL = model_gin.load_model_from_gin({list(model_files)!r}, "
      f"search_paths={cfg.search_paths()!r}, with_optimizer=False)",
      f"cached_program_tasks.cached_program_task({name!r}, {jsonl_paths!r}, "
      f"rates={dict(cfg.source_rates) if cfg.source_rates else None!r}, vocabulary={vocabulary}, "
      f"validation_fraction={cfg.validation_fraction!r}, seed={cfg.data_seed!r})", ""])


def build_cache(ctx: StageContext, cfg: TrainConfig, name: str, paths: Mapping[str, str],
                model_files: Sequence[str]) -> pathlib.Path:
  """Caches the training data with `seqio.scripts.cache_tasks_main` (once); returns the dir.

  A task whose cache has no `COMPLETED` marker (a killed build) is rebuilt
  from scratch; finished ones are kept, so a resumed stage goes straight on.
  """
  cache_dir = ctx.path("seqio_cache")
  names = cached_program_tasks.member_names(name, paths if len(paths) > 1 else
                                            next(iter(paths.values())))
  if all((cache_dir / n / "COMPLETED").exists() for n in names):
    return cache_dir
  for n in names:
    shutil.rmtree(cache_dir / n, ignore_errors=True)
  module_dir = ctx.path("cache_module")
  module_dir.mkdir(parents=True, exist_ok=True)
  atomic.write_text(module_dir / f"{CACHE_MODULE}.py", cache_module(name, paths, cfg, model_files))
  command = child.python_command(
      "seqio.scripts.cache_tasks_main", f"--module_import={CACHE_MODULE}",
      f"--tasks={','.join(f'^{n}$' for n in names)}", f"--output_cache_dir={cache_dir}",
      "--pipeline_options=--runner=DirectRunner")
  pythonpath = os.pathsep.join(p for p in (str(module_dir), str(REPO_ROOT),
                                           os.environ.get("PYTHONPATH")) if p)
  child.run_child(command, ctx.path("seqio_cache.log"),
                  env=child.child_env(extra={**(cfg.env or {}), "PYTHONPATH": pythonpath}),
                  cwd=str(REPO_ROOT))
  missing = [n for n in names if not (cache_dir / n / "COMPLETED").exists()]
  if missing:
    raise StageError(f"seqio's cache tool did not finish {missing}; see "
                     f"{ctx.path('seqio_cache.log')}")
  return cache_dir


# The per-token loss is what a person compares across runs (t5x's `loss` is
# summed over the batch's tokens).
LOSS_KEYS = ("loss_per_nonpadding_target_token", "loss")
_STEP_RE = re.compile(r"Training: step (\d+)")
_LOOP_RE = re.compile(r"Starting main loop over steps (\d+)-(\d+)")
_METRICS_RE = re.compile(r"\[(\d+)\] collection=(\S+) (.*)$")


class _Progress:
  """Turns t5x log lines into progress-bar updates (step, loss, accuracy)."""

  def __init__(self, bar):
    self.bar = bar
    self.last: dict[str, float] = {}

  def __call__(self, line: str) -> None:
    if m := _LOOP_RE.search(line):
      first, total = int(m.group(1)), int(m.group(2))
      self.bar.total = total
      self.bar.n = first
      self.bar.last_print_n = first  # ETA from the steps this run makes
      self.bar.refresh()
    elif m := _STEP_RE.search(line):
      self._set(int(m.group(1)))
    elif m := _METRICS_RE.search(line):
      step, collection = int(m.group(1)), m.group(2)
      values = dict(kv.split("=", 1) for kv in m.group(3).split(", ") if "=" in kv)
      prefix = "" if collection == "train" else "val_"
      for name, keys in (("loss", LOSS_KEYS), ("accuracy", ("accuracy",))):
        key = next((k for k in keys if k in values), None)
        if key is not None:
          try:
            self.last[prefix + name] = float(values[key])
          except ValueError:
            pass
      if collection == "train":
        self._set(step)
      self.bar.set_postfix({k: f"{v:.3g}" for k, v in self.last.items()}, refresh=True)

  def _set(self, step: int) -> None:
    if self.bar.total:
      step = min(step, self.bar.total)
    if step > self.bar.n:
      self.bar.update(step - self.bar.n)


def run(ctx: StageContext, configs: Mapping[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
  """Trains the student with t5x on the verified programs."""
  del upstream
  cfg: TrainConfig = configs["train"]
  records = programs_lib.read_programs(ctx.upstream("verify", "programs.jsonl"))
  selected = select_training_data(records, cfg)
  data_dir = ctx.path("data")
  data_dir.mkdir(parents=True, exist_ok=True)
  paths = {}
  for source, rows in selected.items():
    paths[source] = str(data_dir / f"{source}.jsonl")
    if cfg.task_format == "cot":
      jsonl.write_rows(paths[source], _cot_rows(rows))
    else:
      programs_lib.write_programs(paths[source], rows)
  digest = hashlib.sha1(str(ctx.run.root).encode()).hexdigest()[:10]
  task_name = f"pad_pipeline_{digest}"
  model_files, run_files = snapshot_gin_files(cfg, ctx.path("gin"))
  # The layout follows the model the stage trains (its snapshot copies).
  decoder_only = dataclasses.replace(cfg, model_gin_files=model_files).decoder_only()
  cached = use_cache(cfg, selected, decoder_only)
  atomic.write_text(ctx.path("task.gin"), task_gin(task_name, paths, cfg, cached=cached,
                                                   decoder_only=decoder_only))

  model_dir = ctx.path("model")
  cache_dir = build_cache(ctx, cfg, task_name, paths, model_files) if cached else None
  command = t5x_train_command(cfg, model_dir, ctx.path("task.gin"), model_files + run_files,
                              cache_dir=cache_dir)
  bar = ctx.bar(total=cfg.train_steps, unit="step")
  child.run_child(command, ctx.path("t5x_train.log"), on_line=_Progress(bar),
                  env=child.child_env(extra=cfg.env), cwd=str(REPO_ROOT))
  bar.close()

  curves = read_curves(model_dir)
  atomic.write_json(ctx.path("curves.json"), curves)
  checkpoint = checkpoints.latest_checkpoint(model_dir)
  if checkpoint is None:
    raise StageError(f"t5x finished but wrote no checkpoint into {model_dir}")
  final = {tag: points[-1][1] for tag, points in curves.items() if points}
  return {
      "task": task_name, "examples": {s: len(r) for s, r in selected.items()},
      "questions": {s: len({r.id for r in rows}) for s, rows in selected.items()},
      "checkpoint_dir": str(checkpoint), "step": checkpoints.checkpoint_step(checkpoint),
      "model_gin_files": model_files, "gin_search_paths": cfg.search_paths(),
      "vocab_dir": cfg.vocab_dir, "final_metrics": final,
      "seqio_cache": str(cache_dir) if cache_dir else None, "decoder_only": decoder_only,
  }


def _cot_rows(records: Sequence[Any]) -> list[dict[str, Any]]:
  """Chain-of-thought rows for the same questions (the CoT baseline)."""
  rationales = {}
  if any(r.id.startswith("gsm8k-train-") for r in records):
    rationales = {e.id: (e.rationale, e.answer) for e in benchmarks.load("gsm8k", "train")
                  if e.rationale}
  rows, missing = cot_tasks.cot_rows(records, rationales)
  if not rows:
    raise StageError(f"no chain-of-thought rationale for any of {len(records)} questions")
  if missing:
    logging.warning("CoT baseline: %d questions without a rationale were left out", missing)
  return rows


def snapshot_gin_files(cfg: TrainConfig, out_dir: pathlib.Path) -> tuple[list[str], list[str]]:
  """Copies the model and run gin files into the stage (once) and returns the copies.

  t5x trains, resumes after a kill, and the decode stage rebuilds the model
  from these copies, so an edit of `gin_configs/` during a run cannot make
  the checkpoint and the model definition disagree. (Files they `include`
  are still looked up in the search paths.)
  """
  copies: tuple[list[str], list[str]] = ([], [])
  for kind, names in enumerate((cfg.model_gin_files, cfg.run_gin_files)):
    for index, name in enumerate(names):
      target = out_dir / f"{'model' if kind == 0 else 'run'}{index}_{pathlib.Path(name).name}"
      if not target.exists():
        atomic.write_text(target, cfg.find_gin_file(name).read_text())
      copies[kind].append(str(target))
  return copies


def t5x_train_command(cfg: TrainConfig, model_dir: pathlib.Path, task_gin_path: pathlib.Path,
                      gin_files: Optional[Sequence[str]] = None,
                      cache_dir: Optional[pathlib.Path] = None) -> list[str]:
  """The `python -m t5x.train` command line (gin_files default: the config's;
  `cache_dir`: train from that seqio cache, `USE_CACHED_TASKS=True`)."""
  if gin_files is None:
    gin_files = list(cfg.model_gin_files) + list(cfg.run_gin_files)
  flags = [f"--gin_search_paths={','.join(cfg.search_paths())}"]
  flags += [f"--gin_file={f}" for f in gin_files]
  flags.append(f"--gin_file={task_gin_path}")
  flags.append(f"--gin.MODEL_DIR={_gin_str(model_dir)}")
  if cfg.train_steps is not None:
    flags.append(f"--gin.TRAIN_STEPS={int(cfg.train_steps)}")
  flags += [f"--gin.{name}={value!r}" for name, value in (cfg.macros or {}).items()]
  if cache_dir is not None:
    flags += ["--gin.USE_CACHED_TASKS=True", f"--seqio_additional_cache_dirs={cache_dir}"]
  flags.append("--alsologtostderr")
  return child.python_command("t5x.train", *flags)


def read_curves(model_dir: pathlib.Path) -> dict[str, list[list[float]]]:
  """Every scalar t5x wrote to TensorBoard, as `{collection/tag: [[step, value], ...]}`.

  Collections are the event directories under `model_dir` (`train`,
  `training_eval/<task>`, `inference_eval/<task>`, ...). The event files are
  read directly (TFRecord framing + the `Event` proto), without importing
  TensorFlow into the pipeline process.
  """
  model_dir = pathlib.Path(model_dir)
  curves: dict[str, dict[int, float]] = collections.defaultdict(dict)
  for path in sorted(model_dir.rglob("events.out.tfevents.*")):
    collection = str(path.parent.relative_to(model_dir))
    for step, tag, value in _scalar_events(path):
      curves[f"{collection}/{tag}"][step] = value
  return {tag: [[step, points[step]] for step in sorted(points)]
          for tag, points in sorted(curves.items())}


def _tfrecords(path: pathlib.Path):
  """The records of a TFRecord file (a torn last record is ignored)."""
  with open(path, "rb") as f:
    while True:
      header = f.read(12)  # uint64 length + uint32 crc of the length
      if len(header) < 12:
        return
      length = struct.unpack("<Q", header[:8])[0]
      data = f.read(length)
      if len(data) < length or len(f.read(4)) < 4:
        return
      yield data


def _scalar_events(path: pathlib.Path):
  """(step, tag, value) of every scalar summary in one event file."""
  # Deferred on purpose: tensorboard's protos pull in TensorFlow-sized imports
  # that only reading the curves needs.
  from tensorboard.compat.proto import event_pb2  # pylint: disable=import-outside-toplevel
  from tensorboard.util import tensor_util  # pylint: disable=import-outside-toplevel
  for record in _tfrecords(path):
    event = event_pb2.Event.FromString(record)
    if not event.HasField("summary"):
      continue
    for value in event.summary.value:
      if value.HasField("tensor"):
        array = tensor_util.make_ndarray(value.tensor)
        if array.size == 1 and array.dtype.kind in "fiub":
          yield event.step, value.tag, float(array.reshape(()))
      elif value.WhichOneof("value") == "simple_value":
        yield event.step, value.tag, float(value.simple_value)
