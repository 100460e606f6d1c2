r"""Teacher benchmark: request throughput and verification throughput.

  python -m pad_jax.bench teacher --output=benchmarks/teacher.json

1. Synthesis: the loopback fake OpenAI server (`tests/fake_openai.py`, its
   own process) answers every request after `--latency_s` (200 ms); the
   teacher runs `--requests` requests at `--concurrency` (32). The ideal rate
   is concurrency / latency (160 req/s); `efficiency` = achieved / ideal
   (goal >= 0.9). A bare `AsyncOpenAI` loop with the same concurrency and no
   cache/rate-limit/retry machinery is measured in the same run as a baseline.
2. Verification: `--verify_programs` (55,000, the paper's augmented data
   size) chatty completions of gold-teacher programs are extracted, executed
   in the sandbox with `--verify_workers` processes and checked
   (`pad_jax.teacher.verify.verify_dir`); goal: under 40 s on 2 cores. The
   executor alone is timed on 5,000 of the same programs in the same run
   (`vs_executor_only`: the share of the raw sandbox throughput that the
   whole verification keeps). The CPU is shared, so the load average is
   recorded with the timings.
"""

import asyncio
import json
import os
import resource
import pathlib
import subprocess
import sys
import tempfile
import time

from absl import flags

from pad_jax import atomic
from pad_jax import jsonl
from pad_jax.data import benchmarks
from pad_jax.execution import Executor
from pad_jax.execution.extraction import extract_program
from pad_jax.execution.limits import ExecLimits
from pad_jax.teacher import client as client_lib
from pad_jax.teacher import gold
from pad_jax.teacher import prompts
from pad_jax.teacher import synthesize as synth
from pad_jax.teacher import verify as verify_lib

_OUTPUT = flags.DEFINE_string("output", "benchmarks/teacher.json", "Where to write the JSON.")
_LATENCY = flags.DEFINE_float("latency_s", 0.2, "Fake server latency per request.")
_CONCURRENCY = flags.DEFINE_integer("concurrency", 32, "Requests in flight.")
_REQUESTS = flags.DEFINE_integer("requests", 960, "Requests per synthesis measurement.")
_VERIFY_PROGRAMS = flags.DEFINE_integer("verify_programs", 55_000, "Completions to verify "
                                        "(0 skips the verification part).")
_VERIFY_WORKERS = flags.DEFINE_integer("verify_workers", 2, "Executor processes.")

_REPO = pathlib.Path(__file__).resolve().parents[2]
_BASELINE_PROGRAMS = 5000


def _start_server(latency_s: float) -> tuple[subprocess.Popen, str]:
  script = _REPO / "tests" / "fake_openai.py"
  if not script.exists():
    raise SystemExit(f"error: {script} not found (run from a source checkout)")
  proc = subprocess.Popen([sys.executable, str(script), str(latency_s)], stdout=subprocess.PIPE,
                          text=True)
  base_url = proc.stdout.readline().strip()
  if not base_url.startswith("http"):
    proc.kill()
    raise SystemExit("error: the fake server did not start")
  return proc, base_url


async def _bare_client(base_url: str, examples, concurrency: int) -> float:
  """Requests/s of a plain AsyncOpenAI loop (the baseline)."""
  import openai  # pylint: disable=g-import-not-at-top  # deferred: ~0.6 s, only this baseline needs it
  client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
  semaphore = asyncio.Semaphore(concurrency)

  async def one(example, i):
    async with semaphore:
      await client.chat.completions.create(
          model="bench", messages=prompts.build_messages(example.question,
                                                         i % prompts.NUM_VARIANTS))
  start = time.monotonic()
  await asyncio.gather(*[one(e, i) for i, e in enumerate(examples)])
  seconds = time.monotonic() - start
  await client.close()
  return len(examples) / seconds


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def bench_synthesis(examples, latency_s: float, concurrency: int) -> dict:
  client_lib.quiet_http_logs()
  proc, base_url = _start_server(latency_s)
  try:
    asyncio.run(_bare_client(base_url, examples[:concurrency], concurrency))  # Warm-up.
    bare_rps = asyncio.run(_bare_client(base_url, examples, concurrency))
    config = synth.OpenAIConfig(base_url=base_url, model="bench-model", samples=1,
                                concurrency=concurrency, progress=False,
                                price_input_per_mtok=0.15, price_output_per_mtok=0.6)
    with tempfile.TemporaryDirectory() as out_dir:
      start, cpu_start = time.monotonic(), _cpu_seconds()
      synth.synthesize_openai(examples, out_dir, config, api_key="bench", verify=False)
      seconds, cpu = time.monotonic() - start, _cpu_seconds() - cpu_start
      rows = sum(1 for _ in open(os.path.join(out_dir, "completions.jsonl")))
  finally:
    proc.kill()
    proc.wait()
  ideal = concurrency / latency_s
  rps = rows / seconds
  return {"latency_s": latency_s, "concurrency": concurrency, "requests": len(examples),
          "completions": rows, "seconds": round(seconds, 3), "requests_per_s": round(rps, 2),
          "ideal_requests_per_s": ideal, "efficiency": round(rps / ideal, 4),
          "client_cpu_ms_per_request": round(cpu / len(examples) * 1e3, 3),
          "cpu_bound_max_requests_per_s": round(len(examples) / cpu, 1),
          "bare_client": "AsyncOpenAI.chat.completions.create, same prompts, semaphore only",
          "bare_client_requests_per_s": round(bare_rps, 2),
          "bare_client_efficiency": round(bare_rps / ideal, 4),
          "vs_bare_client": round(rps / bare_rps, 4)}


def bench_verification(examples, count: int, workers: int) -> dict:
  programs = [(e, p) for e in examples if (p := gold.gold_program(e))]
  rows = []
  for i in range(count):
    example, program = programs[i % len(programs)]
    sample = i // len(programs)
    if sample % 2:  # Half of them wrong, as a real teacher's would be.
      program = program.replace("return result", "return result + 1")
    # Every program distinct (as sampled programs mostly are): no execution is shared.
    program = program.replace("    result = ", f"    sample_{sample} = {sample}\n    result = ", 1)
    text = f"Here is the program:\n```python\n{program}\n\nprint(solution())\n```\nDone."
    rows.append({"key": f"{example.id}-{sample}", "id": example.id, "sample": sample,
                 "prompt_variant": sample % 10, "question": example.question,
                 "answer": example.answer, "text": text, "model": "bench", "teacher": "bench"})
  start = time.monotonic()
  for row in rows[:5000]:
    extract_program(row["text"])
  extraction_ms = (time.monotonic() - start) / min(5000, len(rows)) * 1e3
  baseline_programs = [extract_program(r["text"]) for r in rows[:_BASELINE_PROGRAMS]]
  with Executor(workers=workers) as executor:
    executor.run(baseline_programs[:64])  # Warm-up.
    start = time.monotonic()
    executor.run(baseline_programs)
    executor_rate = len(baseline_programs) / (time.monotonic() - start)
  with tempfile.TemporaryDirectory() as in_dir:
    jsonl.write_rows(os.path.join(in_dir, "completions.jsonl"), rows)
    load = os.getloadavg()[0]
    start = time.monotonic()
    report = verify_lib.verify_dir(in_dir, ExecLimits(workers=workers))
    seconds = time.monotonic() - start
  return {"programs": count, "workers": workers, "seconds": round(seconds, 2),
          "programs_per_s": round(count / seconds, 1),
          "executor_only_programs_per_s": round(executor_rate, 1),
          "vs_executor_only": round(count / seconds / executor_rate, 4),
          "executor_only_projected_s": round(count / executor_rate, 2), "goal_s": 40.0,
          "goal_met": seconds < 40.0, "extraction_ms_per_program": round(extraction_ms, 3),
          "kept": report["kept"], "correct": report["correct"],
          "loadavg_1min_at_start": round(load, 2)}


def main(argv):
  del argv
  examples = benchmarks.load("gsm8k", "train")
  if _REQUESTS.value > len(examples):
    raise SystemExit(f"error: --requests must be <= {len(examples)}")
  result = {"machine": {"cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
                        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}}
  result["synthesis"] = bench_synthesis(examples[:_REQUESTS.value], _LATENCY.value,
                                        _CONCURRENCY.value)
  result["efficiency"] = result["synthesis"]["efficiency"]
  print(json.dumps(result["synthesis"]), flush=True)
  if _VERIFY_PROGRAMS.value:
    result["verification"] = bench_verification(examples, _VERIFY_PROGRAMS.value,
                                                _VERIFY_WORKERS.value)
    print(json.dumps(result["verification"]), flush=True)
  output = pathlib.Path(_OUTPUT.value)
  output.parent.mkdir(parents=True, exist_ok=True)
  atomic.write_json(output, result)
  print(f"wrote {output}")
  return 0
