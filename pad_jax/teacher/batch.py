"""OpenAI Batch API mode: same requests and outputs as online mode, half price.

1. the pending requests are written as batch JSONL (`OUT_DIR/batch_input_N.jsonl`,
   one `{"custom_id", "method", "url", "body"}` per request, custom_id = the
   request's first cache key), uploaded (`purpose="batch"`) and submitted;
2. `OUT_DIR/batch_state.json` records each batch id and what its custom_ids
   stand for *before* polling starts, so a re-run after a crash polls the same
   batches instead of paying twice;
3. the batches are polled until they end; the output file is downloaded and
   merged into `completions.jsonl` exactly like online completions (failed
   lines go to `failed.jsonl`), then the batch is marked merged.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
import types
from typing import Any, Optional

from absl import logging
from tqdm import tqdm

from pad_jax import atomic
from pad_jax import jsonl
from pad_jax.errors import DataError
from pad_jax.teacher import cache as cache_lib
from pad_jax.teacher import client as client_lib
from pad_jax.teacher import cost as cost_lib
from pad_jax.teacher.planning import OpenAIConfig
from pad_jax.teacher.planning import Request
from pad_jax.teacher.planning import completion_rows

STATE_FILE = "batch_state.json"
MAX_REQUESTS_PER_BATCH = 50_000
TERMINAL = ("completed", "failed", "expired", "cancelled")


def _load_state(path: pathlib.Path) -> dict[str, Any]:
  if not path.exists():
    return {"batches": []}
  try:
    state = json.loads(jsonl.read_text(path))
  except json.JSONDecodeError as e:
    raise DataError(path, e.lineno, None, f"invalid JSON ({e.msg})") from None
  if not isinstance(state, dict) or not isinstance(state.get("batches"), list):
    raise DataError(path, None, "batches", "expected a JSON object with a 'batches' list")
  return state


def _save_state(path: pathlib.Path, state: dict[str, Any]) -> None:
  atomic.write_json(path, state, indent=1)


def batch_line(request: Request, config: OpenAIConfig) -> dict[str, Any]:
  """The Batch API JSONL line of one planned request."""
  return {"custom_id": request.keys[0], "method": "POST", "url": "/v1/chat/completions",
          "body": {"model": config.model, "messages": request.messages,
                   "n": len(request.samples), "temperature": config.temperature,
                   "top_p": config.top_p, "max_tokens": config.max_tokens}}


def _estimated_cost(request: Request, config: OpenAIConfig,
                    prices: Optional[cost_lib.Prices]) -> float:
  if prices is None:
    return 0.0
  tokens_in = client_lib.estimate_tokens(request.messages, 0)
  return prices.cost(tokens_in, config.max_tokens * len(request.samples))


def run_batch(requests: list[Request], store: cache_lib.CompletionCache, config: OpenAIConfig,
              api_key: Optional[str], prices: Optional[cost_lib.Prices], verifier,
              out_dir: pathlib.Path) -> Optional[str]:
  """Submits, polls and merges batches for `requests`; returns why it stopped early."""
  # Deferred on purpose: the openai package takes ~0.6 s to import and only
  # a run that contacts a server needs it (as in `client.ChatClient`).
  import openai  # pylint: disable=g-import-not-at-top
  client_lib.quiet_http_logs()
  client = openai.OpenAI(base_url=config.base_url, api_key=api_key or client_lib.NO_KEY,
                         max_retries=config.retry.max_attempts,
                         timeout=config.retry.timeout_s)
  state_path = out_dir / STATE_FILE
  state = _load_state(state_path)
  in_batches = {key for b in state["batches"] if not b.get("merged")
                for item in b["items"].values() for key in item["keys"]}
  todo = [r for r in requests if not set(r.keys) & in_batches]
  stopped = None
  if config.max_cost_usd is not None:
    spent = sum(float(r.get("cost_usd") or 0.0) for r in store.rows.values())
    affordable = []
    for request in todo:
      spent += _estimated_cost(request, config, prices)
      if spent > config.max_cost_usd:
        stopped = "max_cost_usd"
        break
      affordable.append(request)
    todo = affordable
  for start in range(0, len(todo), MAX_REQUESTS_PER_BATCH):
    chunk = todo[start:start + MAX_REQUESTS_PER_BATCH]
    _submit(client, chunk, config, state, state_path, out_dir)
  for batch in state["batches"]:
    if not batch.get("merged"):
      if batch["batch_id"] is None:  # Crashed between upload and create.
        _create(client, batch, state, state_path)
      _wait(client, batch, config)
      _merge(client, batch, store, config, prices, verifier)
      batch["merged"] = True
      _save_state(state_path, state)
  client.close()
  return stopped


def _submit(client, chunk: list, config, state: dict, state_path: pathlib.Path,
            out_dir: pathlib.Path) -> None:
  index = len(state["batches"])
  input_path = out_dir / f"batch_input_{index}.jsonl"
  jsonl.write_rows(input_path, (batch_line(r, config) for r in chunk))
  uploaded = client.files.create(file=(input_path.name, input_path.read_bytes()), purpose="batch")
  items = {r.keys[0]: {"id": r.example.id, "question": r.example.question,
                       "answer": r.example.answer, "variant": r.variant, "samples": r.samples,
                       "keys": r.keys} for r in chunk}
  # Recorded before the batch exists: a crash between here and the next save
  # is resolved by `_create` finding the batch of this input file.
  entry = {"batch_id": None, "input_file_id": uploaded.id, "input_path": input_path.name,
           "items": items, "merged": False}
  state["batches"].append(entry)
  _save_state(state_path, state)
  _create(client, entry, state, state_path)


def _create(client, entry: dict, state: dict, state_path: pathlib.Path) -> None:
  """Creates the batch of an uploaded input file, unless one already exists."""
  for existing in client.batches.list(limit=100):
    if existing.input_file_id == entry["input_file_id"]:
      entry["batch_id"] = existing.id
      break
  else:
    batch = client.batches.create(input_file_id=entry["input_file_id"],
                                  endpoint="/v1/chat/completions", completion_window="24h")
    entry["batch_id"] = batch.id
  _save_state(state_path, state)
  logging.info("batch %s: %d requests", entry["batch_id"], len(entry["items"]))


def _wait(client, batch: dict, config) -> Any:
  bar = tqdm(total=len(batch["items"]), desc=f"batch {batch['batch_id']}", unit="req",
             disable=not config.progress, file=sys.stderr, dynamic_ncols=True)
  try:
    while True:
      info = client.batches.retrieve(batch["batch_id"])
      counts = info.request_counts
      if counts is not None:
        bar.n = int(counts.completed or 0) + int(counts.failed or 0)
        bar.set_postfix_str(f"status={info.status} failed={counts.failed}", refresh=True)
      if info.status in TERMINAL:
        batch["status"] = info.status
        batch["output_file_id"] = info.output_file_id
        batch["error_file_id"] = info.error_file_id
        return info
      time.sleep(config.batch_poll_s)
  finally:
    bar.close()


def _merge(client, batch: dict, store: cache_lib.CompletionCache, config, prices,
           verifier) -> None:
  answered: set[str] = set()
  for field in ("output_file_id", "error_file_id"):
    file_id = batch.get(field)
    if not file_id:
      continue
    text = client.files.content(file_id).text
    for number, line in enumerate(text.splitlines(), start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        logging.warning("batch %s %s line %d: not JSON, skipped", batch["batch_id"], field, number)
        continue
      item = batch["items"].get(record.get("custom_id"))
      if item is None:
        continue
      answered.add(record["custom_id"])
      request = Request(example=types.SimpleNamespace(id=item["id"], question=item["question"],
                                                            answer=item["answer"]),
                              variant=item["variant"], samples=item["samples"], keys=item["keys"],
                              messages=[])
      _merge_one(store, request, record, config, prices, verifier)
  for custom_id, item in batch["items"].items():
    if custom_id not in answered:
      for sample, key in zip(item["samples"], item["keys"]):
        store.add_failure({"key": key, "id": item["id"], "sample": sample,
                           "prompt_variant": item["variant"], "model": config.model,
                           "error": f"batch {batch.get('status')}: no result for this request"})


def _merge_one(store, request, record: dict, config, prices, verifier) -> None:
  response = record.get("response") or {}
  body = response.get("body") or {}
  reason = None
  if record.get("error"):
    reason = f"batch error: {json.dumps(record['error'])[:200]}"
  elif response.get("status_code") != 200:
    message = (body.get("error") or {}).get("message", "")
    reason = f"HTTP {response.get('status_code')}: {message[:200]}"
  choices = []
  if reason is None:
    try:
      for choice in sorted(body["choices"], key=lambda c: c.get("index", 0)):
        content = choice["message"]["content"]
        if not isinstance(content, str):
          raise TypeError("content is not text")
        choices.append(client_lib.Choice(content, choice.get("finish_reason")))
    except (KeyError, TypeError, AttributeError) as e:
      reason = f"malformed batch response: {e!r}"[:200]
  if reason is not None:
    for sample, key in zip(request.samples, request.keys):
      store.add_failure({"key": key, "id": request.example.id, "sample": sample,
                         "prompt_variant": request.variant, "model": config.model,
                         "error": reason})
    return
  usage = body.get("usage") or {}
  result = client_lib.ChatResult(choices=choices,
                                 prompt_tokens=int(usage.get("prompt_tokens") or 0),
                                 completion_tokens=int(usage.get("completion_tokens") or 0),
                                 attempts=1)
  rows = completion_rows(request, result, config, prices)
  new_rows = store.add_many(rows)
  if verifier:
    verifier.submit_many(new_rows)
