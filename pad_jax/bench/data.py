r"""Data-side benchmark: Beam verification, tokenization, t5x start-up from a cache.

  python -m pad_jax.bench data --output=benchmarks/data.json

One JSON object (the load average at start recorded beside the timings):

* `beam_vs_single`: `--completions` chatty completions (correct, duplicate,
  wrong, no code) verified by the single-process verifier
  (`verify.verify_dir`, `--workers` executor processes) and by
  `beam_verify.verify_beam` on the DirectRunner, in-process (one worker with
  `--workers` executor processes) and with 2 Beam workers
  (`multi_processing`, one executor process each); completions/s of each,
  wall time including the pipeline's start-up, the ratios to the single
  process, and whether the kept programs are the same.
* `tokenization_examples_per_s`: question + program of the demo's training
  data (`pad_demo_synthetic`, `--tokenize_examples`) through
  `t5x_hooks.datasets.tokenize_split` (batch encoding) vs today's path
  (seqio's one-example-at-a-time `tokenize` chain), and the `tokenizers`
  batch encoder alone.
* `first_step_s_cached`, `first_step_s_in_memory`: seconds from
  `python -m t5x.train` (models/tiny.gin, runs/pad_finetune.gin) starting to
  its first train step finishing (the `END Train loop.` log line of a
  1-step run) on `--programs` (100,000) programs: from seqio's cache
  (`--gin.USE_CACHED_TASKS=True`, made beforehand from `--shards` JSONL
  shards with `seqio.scripts.cache_tasks_main` on one DirectRunner worker
  per CPU, timed as `cache_build_s`) vs the
  in-memory path (the JSONL registered with `@program_task()`, tokenized at
  start-up).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any, Sequence

from absl import flags
from absl import logging

from pad_jax import atomic
from pad_jax.data import programs as programs_lib
from pad_jax.data import synthetic
from pad_jax.execution.limits import ExecLimits

_OUTPUT = flags.DEFINE_string("output", "benchmarks/data.json", "Where to write the JSON.")
_COMPLETIONS = flags.DEFINE_integer("completions", 4000, "Completions to verify.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Executor processes of the single-process run.")
_TOKENIZE_EXAMPLES = flags.DEFINE_integer(
    "tokenize_examples", 5000, "Examples of the demo's training split tokenized by today's "
    "(slow) path; the batch path tokenizes the whole split.")
_PROGRAMS = flags.DEFINE_integer("programs", 100_000, "Programs for the t5x start-up runs.")
_SHARDS = flags.DEFINE_integer("shards", 8, "JSONL shards the cache tool reads in parallel.")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Scratch directory (default: a temp dir).")

REPO = pathlib.Path(__file__).resolve().parents[2]
CACHED_TASK = "pad_bench_cached"


def _chatty(program: str) -> str:
  return (f"Sure! Let's solve it step by step in Python.\n\n```python\n{program}\n\n"
          f"print(solution())\n```\n\nRunning this prints the answer.")


def write_completions(directory: pathlib.Path, n: int) -> None:
  """`n` completions of the demo's problems: 4 per question (correct chatty,
  a duplicate of it, a wrong one, one with no code)."""
  records = synthetic.generate("train", max(1, n // 4), seed=1)
  rows = []
  for r in records:
    texts = [_chatty(r.program), r.program, _chatty(r.program.replace("return ", "return 1 + ", 1)),
             "I think the answer is 7."]
    for sample, text in enumerate(texts):
      rows.append({"key": f"{r.id}:{sample}", "id": r.id, "sample": sample, "prompt_variant": 0,
                   "question": r.question, "answer": r.answer, "text": text, "model": "bench",
                   "teacher": "bench"})
  directory.mkdir(parents=True, exist_ok=True)
  (directory / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:n]))


def _programs(paths: Sequence[pathlib.Path]) -> list[Any]:
  records = [r for p in paths for r in programs_lib.read_programs(p)]
  return sorted(records, key=lambda r: (r.id, str(r.prompt_variant), r.sample))


def bench_beam(work: pathlib.Path, n: int, workers: int) -> dict[str, Any]:
  """Single-process vs Beam DirectRunner verification of the same completions."""
  from pad_jax.teacher import beam_verify  # pylint: disable=g-import-not-at-top
  from pad_jax.teacher import verify as verify_lib  # pylint: disable=g-import-not-at-top
  source = work / "completions"
  write_completions(source, n)
  out: dict[str, Any] = {"completions": n}
  start = time.perf_counter()
  verify_lib.verify_dir(source, ExecLimits(workers=workers), out_dir=work / "single")
  single_s = time.perf_counter() - start
  out["single_programs_per_s"] = round(n / single_s, 1)
  expected = _programs([work / "single" / "programs.jsonl"])
  runs = {
      "beam_1_worker": (ExecLimits(workers=workers), ["--runner=DirectRunner"]),
      "beam_2_workers": (ExecLimits(workers=max(1, workers // 2)),
                         ["--runner=DirectRunner", "--direct_num_workers=2",
                          "--direct_running_mode=multi_processing"]),
  }
  for name, (limits, args) in runs.items():
    logging.info("verification on Beam: %s", name)
    start = time.perf_counter()
    beam_verify.verify_beam(str(source), str(work / name), limits, args, num_shards=4)
    seconds = time.perf_counter() - start
    out[f"{name}_programs_per_s"] = round(n / seconds, 1)
    out[f"{name}_vs_single"] = round(single_s / seconds, 3)
    out[f"{name}_same_programs"] = _programs(sorted((work / name).glob("programs-*.jsonl"))) == \
        expected
  out["kept"] = len(expected)
  return out


def bench_tokenization(slow_examples: int) -> dict[str, Any]:
  """Examples/s of the batch path, today's seqio path and the raw batch encoder."""
  import tasks  # pylint: disable=g-import-not-at-top,unused-import  (registers the demo task)
  import seqio  # pylint: disable=g-import-not-at-top
  from pad_jax.t5x_hooks import datasets  # pylint: disable=g-import-not-at-top
  from tasks import demo_tasks  # pylint: disable=g-import-not-at-top
  task = seqio.get_mixture_or_task(demo_tasks.TASK_NAME)
  lengths = demo_tasks.FEATURE_LENGTHS
  datasets._TOKENIZED_CACHE.clear()  # pylint: disable=protected-access
  task.source.get_dataset(split="train", shuffle=False)  # Generates the problems (cached) first.
  start = time.perf_counter()
  fast = datasets.tokenize_split(task, "train", lengths)
  fast_s = time.perf_counter() - start
  n = fast.report.examples
  ds = task.get_dataset(sequence_length=None, split="train", shuffle=False, num_epochs=1)
  start = time.perf_counter()
  slow = sum(1 for _ in ds.take(slow_examples).as_numpy_iterator())
  slow_s = time.perf_counter() - start
  records = synthetic.generate("train", demo_tasks.SIZES["train"], seed=0)
  vocabulary = synthetic.demo_vocabulary()
  vocabulary.encode_batch(["warm up"])
  start = time.perf_counter()
  vocabulary.encode_batch([r.question for r in records])
  vocabulary.encode_batch([r.program for r in records])
  raw_s = time.perf_counter() - start
  return {"task": demo_tasks.TASK_NAME, "examples": n,
          "batch_path": round(n / fast_s, 1),
          "seqio_one_at_a_time": round(slow / slow_s, 1), "seqio_examples": slow,
          "speedup": round((n / fast_s) / (slow / slow_s), 2),
          "tokenizers_encode_batch": round(len(records) / raw_s, 1)}


def _first_step_seconds(argv: list[str], env: dict[str, str], log: pathlib.Path) -> float:
  """Seconds from starting t5x.train to its `END Train loop.` line; then stops it."""
  start = time.perf_counter()
  with open(log, "w", encoding="utf-8") as out:
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
      for line in proc.stderr:
        out.write(line)
        if "END Train loop." in line:
          return time.perf_counter() - start
    finally:
      proc.kill()
      proc.wait()
  raise RuntimeError(f"t5x.train never finished a step; see {log}")


def bench_first_step(work: pathlib.Path, n: int) -> dict[str, Any]:
  """t5x.train start-up to its first step: seqio cache vs in-memory tokenization."""
  records = synthetic.generate("train", n, seed=2)
  data = work / "programs.jsonl"  # One file for @program_task(); the same rows in shards
  programs_lib.write_programs(data, records)  # for the cache tool, as verification writes them.
  shards = _SHARDS.value
  for i in range(shards):
    programs_lib.write_programs(work / f"programs-{i:05d}-of-{shards:05d}.jsonl",
                                records[i::shards])
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="1",
             PAD_CACHED_PROGRAMS=f"{CACHED_TASK}={work}/programs-*-of-*.jsonl",
             PAD_CACHED_PROGRAMS_VOCAB="@demo",
             PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
  cache = work / "cache"
  start = time.perf_counter()
  with open(work / "cache.log", "w", encoding="utf-8") as log:
    subprocess.run([sys.executable, "-m", "seqio.scripts.cache_tasks_main",
                    "--module_import=tasks.cached_program_tasks", f"--tasks={CACHED_TASK}",
                    f"--output_cache_dir={cache}", f"--min_shards={shards}",
                    "--pipeline_options=--runner=DirectRunner,--direct_num_workers="
                    f"{len(os.sched_getaffinity(0))},--direct_running_mode=multi_processing"],
                   cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=log)
  cache_s = time.perf_counter() - start
  common = [sys.executable, "-m", "t5x.train", "--gin_search_paths=gin_configs",
            "--gin_file=models/tiny.gin", "--gin_file=runs/pad_finetune.gin",
            "--gin.TRAIN_STEPS=1", "--gin.EVAL_PERIOD=1000", "--gin.EVAL_STEPS=1",
            "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 128}"]
  cached = _first_step_seconds(
      common + [f"--gin.MODEL_DIR='{work / 'run_cached'}'",
                f"--gin.MIXTURE_OR_TASK_NAME='{CACHED_TASK}'", "--gin.USE_CACHED_TASKS=True",
                f"--seqio_additional_cache_dirs={cache}"], env, work / "cached.log")
  in_memory = _first_step_seconds(
      common + [f"--gin.MODEL_DIR='{work / 'run_memory'}'",
                "--gin.MIXTURE_OR_TASK_NAME=@program_task()",
                f"--gin.program_task.jsonl_path='{data}'",
                "--gin.program_task.name='pad_bench_memory'"], env, work / "memory.log")
  return {"programs": n, "cache_build_s": round(cache_s, 1),
          "first_step_s_cached": round(cached, 1), "first_step_s_in_memory": round(in_memory, 1)}


def main(argv: list[str]) -> int:
  del argv
  load = os.getloadavg()
  with tempfile.TemporaryDirectory(dir=_WORK_DIR.value) as tmp:
    work = pathlib.Path(tmp)
    logging.info("verification: single process vs Beam on %d completions", _COMPLETIONS.value)
    beam = bench_beam(work / "verify", _COMPLETIONS.value, _WORKERS.value)
    logging.info("tokenization of the demo's training split")
    tokenization = bench_tokenization(_TOKENIZE_EXAMPLES.value)
    logging.info("t5x.train start-up on %d programs: cached vs in memory", _PROGRAMS.value)
    first_step = bench_first_step(work / "start", _PROGRAMS.value)
  report = {
      "load_average_at_start": [round(x, 2) for x in load],
      "cpus": len(os.sched_getaffinity(0)),
      "beam_vs_single": beam,
      "tokenization_examples_per_s": tokenization,
      "first_step_s_cached": first_step["first_step_s_cached"],
      "first_step_s_in_memory": first_step["first_step_s_in_memory"],
      "first_step": first_step,
      "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
  }
  atomic.write_json(_OUTPUT.value, report)
  print(json.dumps(report, indent=2))
  return 0
