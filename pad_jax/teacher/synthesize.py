"""Program synthesis: questions -> teacher completions -> verified programs.

Two teachers:

* `openai`: any OpenAI-compatible chat server (`synthesize_openai`), online
  with `AsyncOpenAI` or through the Batch API (`pad_jax.teacher.batch`);
* `gold`: the offline gold-rationale teacher (`synthesize_gold`).

Both append finished completions to the durable cache
(`OUT_DIR/completions.jsonl`, see `cache.py`) and stream them into the
verifier, which writes `programs.jsonl`, `report.json` and `report.png` when
the run ends. Re-running the same call skips finished work.

Python API (what the pipeline calls):

  synthesize(teacher, benchmark, split, out_dir, limit=None, data_dir=None,
             openai_config=OpenAIConfig(...), limits=ExecLimits(),
             api_key=None, verify=True, program_style="concise",
             budget=TargetBudget(256)) -> dict   # the report (+ "stopped")

`program_style` is the gold teacher's (`pad_jax.teacher.gold.STYLES`);
`budget` is the student's target budget the report counts kept programs
against (`report.TargetBudget`; `drop=True` removes the longer ones).

`OpenAIConfig` lives in `pad_jax.teacher.planning` (shared with the Batch API
mode) and is re-exported here.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import os
import pathlib
import sys
import time
from typing import Any, Optional, Sequence, Union

from absl import logging
from tqdm import tqdm

from pad_jax import atomic
from pad_jax import jsonl
from pad_jax.errors import ConfigError
from pad_jax.data import benchmarks
from pad_jax.execution.limits import ExecLimits
from pad_jax.teacher import batch as batch_lib
from pad_jax.teacher import cache as cache_lib
from pad_jax.teacher import client as client_lib
from pad_jax.teacher import cost as cost_lib
from pad_jax.teacher import gold as gold_lib
from pad_jax.teacher import prompts
from pad_jax.teacher import report as report_lib
from pad_jax.teacher import verify as verify_lib
from pad_jax.teacher.planning import OpenAIConfig
from pad_jax.teacher.planning import Request
from pad_jax.teacher.planning import completion_rows
from pad_jax.teacher.planning import plan_requests

TEACHERS = ("openai", "gold")
GOLD_VERSION = "gold-v1"  # The verbose style's; other styles add their name (cache keys).
PathLike = Union[str, os.PathLike]


# ---------------------------------------------------------------------------
# Entry point.


def synthesize(teacher: str, benchmark: str, split: str, out_dir: PathLike, *,
               limit: Optional[int] = None, data_dir: Optional[PathLike] = None,
               openai_config: Optional[OpenAIConfig] = None,
               limits: ExecLimits = ExecLimits(),
               api_key: Optional[str] = None, verify: bool = True,
               progress: bool = False, program_style: str = gold_lib.DEFAULT_STYLE,
               budget: Optional[report_lib.TargetBudget] = None) -> dict[str, Any]:
  """Loads `benchmark`/`split` (first `limit` questions) and runs `teacher`.

  `limits` are the executor's limits and answer mode for verification.
  `progress` shows the gold teacher's verification bar (the openai teacher's
  bar follows `openai_config.progress`). `program_style` is the gold
  teacher's program style; `budget` the student's target-token budget that
  the report counts (and, with `budget.drop`, enforces) on kept programs.

  Returns:
    The verification report (see `report.py`), plus `stopped` (None, or why
    the run stopped early, e.g. "max_cost_usd").
  """
  if teacher not in TEACHERS:
    raise ConfigError(f"teacher must be one of {TEACHERS}, got {teacher!r}")
  if program_style not in gold_lib.STYLES:
    raise ConfigError(f"program_style must be one of {gold_lib.STYLES}, got {program_style!r}")
  examples = benchmarks.load(benchmark, split, data_dir)
  if limit is not None:
    if limit < 1:
      raise ConfigError(f"limit must be >= 1, got {limit}")
    examples = examples[:limit]
  source = {"benchmark": benchmark, "split": split, "limit": limit}
  if teacher == "gold":
    return synthesize_gold(examples, out_dir, limits, verify=verify, source=source,
                           progress=progress, style=program_style, budget=budget)
  return synthesize_openai(examples, out_dir, openai_config or OpenAIConfig(), api_key=api_key,
                           limits=limits, verify=verify, source=source, budget=budget)


def _write_manifest(out_dir: pathlib.Path, manifest: dict[str, Any]) -> None:
  atomic.write_json(out_dir / verify_lib.MANIFEST_FILE, manifest)


def _finish(out_dir: pathlib.Path, store: cache_lib.CompletionCache,
            verifier: Optional[verify_lib.StreamingVerifier], limits: ExecLimits,
            manifest: dict[str, Any], started: float, stopped: Optional[str],
            budget: Optional[report_lib.TargetBudget] = None) -> dict[str, Any]:
  failed = jsonl.read_resumable(store.failed_path)
  store.close()
  if verifier is None:
    return {"stopped": stopped, "completions": len(store.rows)}
  verdicts = verifier.finish()
  report = verify_lib.write_outputs(out_dir, verdicts, limits.answer_mode, failed, manifest,
                                    time.monotonic() - started, budget=budget)
  report["stopped"] = stopped
  return report


# ---------------------------------------------------------------------------
# The gold-rationale teacher.


def synthesize_gold(examples: Sequence[Any], out_dir: PathLike,
                    limits: ExecLimits = ExecLimits(), *,
                    verify: bool = True, source: Optional[dict] = None,
                    progress: bool = False, style: str = gold_lib.DEFAULT_STYLE,
                    budget: Optional[report_lib.TargetBudget] = None) -> dict[str, Any]:
  """Converts each example's rationale to a program, then verifies them all.

  Args:
    examples: `Example`s with a `rationale` (GSM8K).
    out_dir: output directory (completions.jsonl, failed.jsonl, programs.jsonl,
      report.json, report.png, run.json).
    limits: the executor's limits and answer mode for verification.
    verify: run verification (else only completions are written).
    source: benchmark/split/limit, recorded in run.json.
    progress: show a progress bar of the verification.
    style: the program style (`gold.STYLES`).
    budget: the target budget counted in the report (None: 256 CodeT5 tokens).

  Returns:
    The report dict.
  """
  out_dir = pathlib.Path(out_dir)
  version = gold_version(style)
  manifest = dict(source or {}, teacher="gold", model=version, program_style=style,
                  questions=len(examples))
  _write_manifest(out_dir, manifest)
  started = time.monotonic()
  store = cache_lib.CompletionCache(out_dir)
  rows, failures = [], []
  for example in examples:
    key = hashlib.sha256(f"{version}\0{example.id}\0{example.question}".encode()).hexdigest()
    if key in store:
      continue
    program = gold_lib.gold_program(example, style)
    base = {"key": key, "id": example.id, "sample": 0, "prompt_variant": "gold",
            "question": example.question, "answer": example.answer, "model": version,
            "teacher": "gold"}
    if program is None:
      failures.append(dict(base, error="no-arithmetic: the rationale's equations do not reach "
                           "the gold answer"))
    else:
      rows.append(dict(base, text=program, finish_reason="stop",
                       usage={"prompt_tokens": 0, "completion_tokens": 0}, cost_usd=0.0))
  store.add_many(rows)
  for failure in failures:
    store.add_failure(failure)
  verifier = None
  if verify:  # Programs are written in seconds: verify them all in one stream.
    verifier = verify_lib.StreamingVerifier(limits, progress=progress,
                                            total=len(store.rows))
    verifier.submit_many(store.rows.values())
  logging.info("gold teacher: %d programs, %d rationales without one (%.1f s)", len(rows),
               len(failures), time.monotonic() - started)
  return _finish(out_dir, store, verifier, limits, manifest, started, None, budget)


def gold_version(style: str) -> str:
  """The gold teacher's `model` name for `style` (part of its cache keys)."""
  return GOLD_VERSION if style == "verbose" else f"{GOLD_VERSION}-{style}"


# ---------------------------------------------------------------------------
# The OpenAI-compatible teacher.


def resolve_api_key(base_url: str, api_key: Optional[str] = None,
                    api_key_file: Optional[PathLike] = None) -> Optional[str]:
  """The key from the argument, a key file, or OPENAI_API_KEY (in that order).

  Raises:
    ValueError: no key for api.openai.com, or an unreadable/empty key file.
  """
  if api_key:
    return api_key
  if api_key_file:
    path = pathlib.Path(api_key_file)
    try:
      key = path.read_text().strip()
    except OSError as e:
      raise ConfigError(f"{path}: cannot read the API key file ({e.strerror})") from None
    if not key:
      raise ConfigError(f"{path}: the API key file is empty")
    return key
  key = os.environ.get("OPENAI_API_KEY", "").strip()
  if key:
    return key
  if "api.openai.com" in base_url:
    raise ConfigError("no API key: set OPENAI_API_KEY or pass --api_key_file "
                     "(servers such as vLLM need none)")
  return None


def synthesize_openai(examples: Sequence[Any], out_dir: PathLike, config: OpenAIConfig, *,
                      api_key: Optional[str] = None,
                      limits: ExecLimits = ExecLimits(),
                      verify: bool = True, source: Optional[dict] = None,
                      budget: Optional[report_lib.TargetBudget] = None) -> dict[str, Any]:
  """Samples programs for `examples` from an OpenAI-compatible server.

  Args:
    examples: questions (`Example`s: id, question, answer).
    out_dir: output directory; re-running resumes.
    config: server, model, sampling, limits and budget.
    api_key: the key (else `resolve_api_key`'s sources); kept in memory only.
    limits: the executor's limits and answer mode for verification.
    verify: verify while completions arrive and write programs/report.
    source: benchmark/split/limit, recorded in run.json.
    budget: the student's target budget counted in the report (None: 256
      CodeT5 tokens, counted, not dropped).

  Returns:
    The report dict, with `stopped` set when the budget cap ended the run.

  Raises:
    ValueError: bad config, or `max_cost_usd` for a model without prices.
  """
  config.validate()
  out_dir = pathlib.Path(out_dir)
  api_key = resolve_api_key(config.base_url, api_key)
  prices = cost_lib.lookup_prices(config.model, config.price_input_per_mtok,
                                  config.price_output_per_mtok, batch=config.batch)
  if prices is None:
    if config.max_cost_usd is not None:
      raise ConfigError(f"--max_cost_usd needs prices, and model {config.model!r} is not in the "
                       "price table: pass --price_input_per_mtok and --price_output_per_mtok")
    logging.warning("no prices for model %r: cost is reported as 0", config.model)
  manifest = dict(source or {}, teacher="openai", model=config.model, base_url=config.base_url,
                  questions=len(examples), samples=config.samples,
                  prompt_variants=list(config.variants),
                  prompt_fingerprints={v: prompts.prompt_fingerprint(v) for v in config.variants},
                  temperature=config.temperature, top_p=config.top_p,
                  max_tokens=config.max_tokens, batch=config.batch,
                  prices=dataclasses.asdict(prices) if prices else None)
  _write_manifest(out_dir, manifest)
  started = time.monotonic()
  store = cache_lib.CompletionCache(out_dir)
  verifier = verify_lib.StreamingVerifier(limits) if verify else None
  if verifier:
    verifier.submit_many(store.rows.values())
  requests, finished = plan_requests(examples, config, set(store.rows))
  spent = sum(float(r.get("cost_usd") or 0.0) for r in store.rows.values())
  logging.info("%d samples already done, %d requests to make", finished, len(requests))
  if config.batch:
    stopped = batch_lib.run_batch(requests, store, config, api_key, prices, verifier, out_dir)
  else:
    runner = _OnlineRunner(store, config, api_key, prices, verifier, spent,
                           total=finished + sum(len(r.samples) for r in requests),
                           initial=finished)
    stopped = asyncio.run(runner.run(requests))
  if stopped:
    logging.warning("stopped early (%s); re-run the same command to continue", stopped)
  return _finish(out_dir, store, verifier, limits, manifest, started, stopped, budget)


class _OnlineRunner:
  """Sends the planned requests with a worker pool; records every outcome."""

  def __init__(self, store: cache_lib.CompletionCache, config: OpenAIConfig,
               api_key: Optional[str], prices: Optional[cost_lib.Prices], verifier,
               spent: float, total: int, initial: int):
    self.store = store
    self.config = config
    self.api_key = api_key
    self.prices = prices
    self.verifier = verifier
    self.spent = spent
    self.total = total
    self.initial = initial
    self.failures = 0
    self.in_flight = 0
    self.requests_done = 0
    self.cost_per_request: Optional[float] = None
    self.stopped: Optional[str] = None

  def _over_budget(self) -> bool:
    cap = self.config.max_cost_usd
    if cap is None:
      return False
    projected = self.spent + self.in_flight * (self.cost_per_request or 0.0)
    return projected >= cap

  async def run(self, requests: list[Request]) -> Optional[str]:
    if self.config.max_cost_usd is not None and self.spent >= self.config.max_cost_usd:
      return "max_cost_usd"
    client = client_lib.ChatClient(self.config.base_url, self.api_key, self.config.model,
                                   self.config.concurrency, self.config.rpm, self.config.tpm,
                                   self.config.retry)
    pending = collections.deque(requests)
    self.started = time.monotonic()
    self.bar = tqdm(total=self.total, initial=self.initial, unit="sample", dynamic_ncols=True,
                    disable=not self.config.progress, file=sys.stderr, mininterval=0.5,
                    desc="synthesize")
    try:
      workers = [self._worker(client, pending) for _ in range(self.config.concurrency * 2)]
      await asyncio.gather(*workers)
    finally:
      self.bar.close()
      await client.close()
    return self.stopped

  async def _worker(self, client: client_lib.ChatClient, pending: collections.deque) -> None:
    while pending and not self.stopped:
      if self._over_budget():
        self.stopped = "max_cost_usd"
        return
      request = pending.popleft()
      self.in_flight += 1
      try:
        result = await client.chat(request.messages, n=len(request.samples),
                                   temperature=self.config.temperature, top_p=self.config.top_p,
                                   max_tokens=self.config.max_tokens)
      except client_lib.RequestFailed as e:
        await asyncio.to_thread(self._record_failure, request, str(e))
        continue
      finally:
        self.in_flight -= 1
      rows = completion_rows(request, result, self.config, self.prices)
      new_rows = await asyncio.to_thread(self.store.add_many, rows)
      if self.verifier:
        self.verifier.submit_many(new_rows)
      if len(rows) < len(request.samples):
        await asyncio.to_thread(self._record_failure, request,
                                f"server returned {len(rows)} of {len(request.samples)} choices",
                                skip=len(rows))
      self._account(rows, client.retries)

  def _record_failure(self, request: Request, reason: str, skip: int = 0) -> None:
    for sample, key in list(zip(request.samples, request.keys))[skip:]:
      self.store.add_failure({"key": key, "id": request.example.id, "sample": sample,
                              "prompt_variant": request.variant, "model": self.config.model,
                              "error": reason})
      self.failures += 1
    self.bar.update(len(request.samples) - skip)
    self._postfix(0)

  def _account(self, rows: list[dict[str, Any]], retries: int) -> None:
    cost = sum(r["cost_usd"] for r in rows)
    self.spent += cost
    self.requests_done += 1
    previous = self.cost_per_request
    self.cost_per_request = cost if previous is None else 0.9 * previous + 0.1 * cost
    self.bar.update(len(rows))
    self._postfix(retries)

  def _postfix(self, retries: int) -> None:
    elapsed = max(1e-9, time.monotonic() - self.started)
    self.bar.set_postfix_str(f"req/s={self.requests_done / elapsed:.1f} "
                             f"failed={self.failures} retries={retries} "
                             f"cost=${self.spent:.4f}", refresh=False)
