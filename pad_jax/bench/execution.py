r"""Benchmark: the sandboxed executor vs. PaD's `python file.py` vs. bare exec.

  python -m pad_jax.bench execution --n=2000 --output=benchmarks/execution.json

All three run in one process on the same programs (the reference `code` of
`pal/gsmhardv2.jsonl`, cycled to `--n`), so the ratios hold even on a busy
machine:

* executor: `pad_jax.execution.Executor` (all isolation layers, `--workers`);
* subprocess: PaD's method, each program written to a file and run with
  `python file.py` in a new process, one at a time (on `--subprocess_n`
  programs, as it is slow);
* inprocess: `exec` + `solution()` in this process (unsafe upper bound);
* bare fork: the executor's design with none of its isolation, its ceiling:
  the same number of lean `python -I -S` zygotes with the same modules
  preloaded and the heap frozen (`gc.freeze`), forking one child per program that execs it, calls
  `solution()` and pipes back the number, but no namespaces, uid change,
  rlimits, seccomp, import guard, scratch directory or clean-up.
  `vs_bare_fork` = executor programs/s over bare-fork programs/s.

Also reported: CPU milliseconds per program (this process and its children,
from getrusage) for the executor and the subprocess method, minor page faults
per program for the executor and the bare fork (what most of a fork costs), and with
`--levels` the executor at each isolation level this user can force.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional

from absl import flags
from absl import logging

from pad_jax import answers
from pad_jax.bench import _t5
from pad_jax.execution import Executor
from pad_jax.execution import executor as executor_lib

_N = flags.DEFINE_integer("n", 1000, "Programs for the executor and in-process runs.")
_SUBPROCESS_N = flags.DEFINE_integer("subprocess_n", 100,
                                     "Programs for PaD's slow subprocess method.")
_WORKERS = flags.DEFINE_integer("workers", None, "Executor workers (default: CPU count).")
_OUTPUT = flags.DEFINE_string("output", "benchmarks/execution.json", "Where to write the JSON.")
_DATA = flags.DEFINE_string("data", None, "gsmhardv2.jsonl (default: <data_dir>/pal/).")
_LEVELS = flags.DEFINE_bool("levels", False,
                            "Also time the executor at each lower isolation level (root only).")


def load_programs(n: int, path: Optional[str] = None) -> tuple[list[str], list[float]]:
  """The first `n` reference programs of gsmhardv2 (cycled) and targets."""
  if path is None:
    base = os.environ.get("PAD_DATA_DIR") or os.path.join(
        os.path.dirname(__file__), "..", "..", "..", "shared", "data")
    path = os.path.join(base, "pal", "gsmhardv2.jsonl")
  with open(path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  rows = [rows[i % len(rows)] for i in range(n)]
  return [r["code"] for r in rows], [r["target"] for r in rows]


def _cpu_seconds() -> float:
  usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
  return sum(u.ru_utime + u.ru_stime for u in usage)


def _child_faults() -> int:
  """Page faults of reaped children (workers, zygotes and their programs)."""
  return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
  cpu, wall = _cpu_seconds(), time.perf_counter()
  result = fn()
  return result, time.perf_counter() - wall, _cpu_seconds() - cpu


def bench_executor(programs: list[str], workers: Optional[int],
                   isolation: str = "auto") -> dict[str, Any]:
  """Wall time of one `run` call; CPU of the whole pool's life (start-up
  included), since workers' CPU reaches getrusage only once they are reaped."""
  cpu, faults = _cpu_seconds(), _child_faults()
  with Executor(workers=workers, timeout_s=5.0, isolation=isolation) as executor:
    results, wall, _ = _timed(lambda: executor.run(programs))
    level = executor.isolation
  cpu = _cpu_seconds() - cpu
  return {"values": [r.value for r in results], "programs_per_s": len(programs) / wall,
          "cpu_ms_per_program": 1000 * cpu / len(programs), "isolation": level,
          "faults_per_program": (_child_faults() - faults) / len(programs)}


def bench_subprocess(programs: list[str]) -> dict[str, Any]:
  """PaD's method: a file per program, `python file.py`, stdout parsed."""
  values = []
  with tempfile.TemporaryDirectory() as tmp:
    def run_all():
      for i, program in enumerate(programs):
        path = os.path.join(tmp, f"p{i}.py")
        with open(path, "w", encoding="utf-8") as f:
          f.write(program + "\nprint(solution())\n")
        proc = subprocess.run([sys.executable, path], capture_output=True, text=True,
                              timeout=10, check=False)
        values.append(answers.parse_number(proc.stdout.strip()))
    _, wall, cpu = _timed(run_all)
  return {"values": values, "programs_per_s": len(programs) / wall,
          "cpu_ms_per_program": 1000 * cpu / len(programs)}


def bench_inprocess(programs: list[str]) -> dict[str, Any]:
  """Unsafe upper bound: exec in this very process."""
  def run_all():
    values = []
    for program in programs:
      namespace: dict[str, Any] = {}
      exec(program, namespace)  # pylint: disable=exec-used
      values.append(answers.parse_number(namespace["solution"]()))
    return values
  values, wall, cpu = _timed(run_all)
  return {"values": values, "programs_per_s": len(programs) / wall,
          "cpu_ms_per_program": 1000 * cpu / len(programs)}


_BARE_ZYGOTE = r"""
import json, os, sys
config = json.loads(sys.argv[1])
namespace = {"__name__": "_pad_answers"}
exec(compile(open(config["answers"]).read(), config["answers"], "exec"), namespace)
parse_number = namespace["parse_number"]
for name in config["preload"]:
  try:
    __import__(name)
  except ImportError:
    pass

def run(source):
  read_fd, write_fd = os.pipe()
  pid = os.fork()
  if pid == 0:
    try:
      os.setsid()  # As the zygote's children (and the same CPU share under autogroup).
      program = {"__name__": "__main__"}
      exec(compile(source, "<program>", "exec"), program)
      out = ["ok", parse_number(program["solution"]())]
    except BaseException as e:
      out = ["runtime_error", None]
    os.write(write_fd, json.dumps(out).encode())
    os._exit(0)
  os.close(write_fd)
  os.waitpid(pid, 0)
  data = os.read(read_fd, 4096)
  os.close(read_fd)
  return data

import gc
gc.collect()
gc.freeze()
for line in sys.stdin.buffer:
  out = sys.stdout.buffer
  for index, source in json.loads(line):
    out.write(b"[%d,%s]\n" % (index, run(source)))
  out.flush()
"""


def bench_bare_fork(programs: list[str], workers: int) -> dict[str, Any]:
  """The executor's ceiling: fork-per-program zygotes without any isolation."""
  cpu, faults = _cpu_seconds(), _child_faults()
  config = json.dumps({"answers": str(executor_lib._ANSWERS_MODULE),  # pylint: disable=protected-access
                       "preload": list(executor_lib.DEFAULT_ALLOWED_MODULES) +
                                  list(executor_lib.LAZY_STDLIB_MODULES)})
  procs = [subprocess.Popen([sys.executable, "-I", "-S", "-X", "utf8", "-c", _BARE_ZYGOTE, config],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={}, cwd="/")
           for _ in range(workers)]
  try:
    chunks = [list(enumerate(programs))[i::workers] for i in range(workers)]
    def run_all():
      for proc, chunk in zip(procs, chunks):
        proc.stdin.write(json.dumps(chunk).encode() + b"\n")
        proc.stdin.flush()
      values: dict[int, Any] = {}
      for proc, chunk in zip(procs, chunks):
        for _ in chunk:
          index, (status, value) = json.loads(proc.stdout.readline())
          values[index] = value if status == "ok" else None
      return [values[i] for i in range(len(programs))]
    values, wall, _ = _timed(run_all)
  finally:
    for proc in procs:
      proc.stdin.close()
      proc.wait()
  cpu = _cpu_seconds() - cpu
  return {"values": values, "programs_per_s": len(programs) / wall,
          "cpu_ms_per_program": 1000 * cpu / len(programs),
          "faults_per_program": (_child_faults() - faults) / len(programs)}


def _accuracy(values: list[Any], targets: list[float]) -> float:
  return sum(answers.answers_match(v, t, "strict") for v, t in zip(values, targets)) / len(values)


def main(argv: list[str]) -> int:
  del argv
  load = _t5.load_average()
  programs, targets = load_programs(_N.value, _DATA.value)
  sub_n = min(_SUBPROCESS_N.value, len(programs))
  workers = _WORKERS.value or len(os.sched_getaffinity(0))
  logging.info("executor on %d programs with %d workers", len(programs), workers)
  executor = bench_executor(programs, workers)
  logging.info("PaD subprocess method on %d programs", sub_n)
  sub = bench_subprocess(programs[:sub_n])
  logging.info("in-process exec on %d programs", len(programs))
  inproc = bench_inprocess(programs)
  logging.info("bare fork-per-program pool on %d programs with %d workers", len(programs),
               workers)
  bare = bench_bare_fork(programs, workers)
  report = {
      "n": len(programs),
      "subprocess_n": sub_n,
      "workers": workers,
      "cpus": os.cpu_count(),
      "isolation": executor["isolation"],
      "executor_programs_per_s": round(executor["programs_per_s"], 1),
      "subprocess_programs_per_s": round(sub["programs_per_s"], 2),
      "inprocess_programs_per_s": round(inproc["programs_per_s"], 1),
      "speedup_vs_subprocess": round(executor["programs_per_s"] / sub["programs_per_s"], 1),
      "bare_fork_programs_per_s": round(bare["programs_per_s"], 1),
      "vs_bare_fork": round(executor["programs_per_s"] / bare["programs_per_s"], 3),
      "bare_fork_cpu_ms_per_program": round(bare["cpu_ms_per_program"], 3),
      "executor_cpu_ms_per_program": round(executor["cpu_ms_per_program"], 3),
      # Minor page faults per program (worker, zygote and program processes):
      # most of a fork's cost is copy-on-write faults, on both sides.
      "bare_fork_faults_per_program": round(bare["faults_per_program"], 1),
      "executor_faults_per_program": round(executor["faults_per_program"], 1),
      "subprocess_cpu_ms_per_program": round(sub["cpu_ms_per_program"], 2),
      "inprocess_cpu_ms_per_program": round(inproc["cpu_ms_per_program"], 4),
      "cpu_speedup_vs_subprocess": round(sub["cpu_ms_per_program"] /
                                         executor["cpu_ms_per_program"], 1),
      "executor_accuracy": _accuracy(executor["values"], targets),
      "subprocess_accuracy": _accuracy(sub["values"], targets[:sub_n]),
      "inprocess_accuracy": _accuracy(inproc["values"], targets),
      "bare_fork_accuracy": _accuracy(bare["values"], targets),
      "load_average_1m_at_start": load,
      "load_average_1m": _t5.load_average(),
  }
  if _LEVELS.value and os.geteuid() == 0:
    for level in ("uid", "basic"):
      result = bench_executor(programs, workers, isolation=level)
      report[f"executor_{level}_programs_per_s"] = round(result["programs_per_s"], 1)
      report[f"executor_{level}_cpu_ms_per_program"] = round(result["cpu_ms_per_program"], 3)
  os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
  with open(_OUTPUT.value, "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2)
    f.write("\n")
  print(json.dumps(report, indent=2))
  return 0
