"""Robust chat-completion calls to any OpenAI-compatible server.

`ChatClient` wraps `openai.AsyncOpenAI` (its own retries off) with

* a concurrency limit and requests-per-minute / tokens-per-minute token
  buckets,
* retries with exponential backoff and full jitter for 429 (honouring
  `Retry-After` / `retry-after-ms`), 408/409, 5xx, timeouts, dropped
  connections and malformed or truncated response bodies,
* a final `RequestFailed(reason)` when a request keeps failing (or fails with
  a non-retryable 4xx), which the caller records and moves on from.

The API key is handed to the client object only: it is never logged, and any
error text that is recorded is scrubbed of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import logging
import random
import time
from typing import Any, Optional

# Key-free default for servers that need no key (vLLM, SGLang, llama.cpp).
NO_KEY = "no-key-needed"
OPENAI_BASE_URL = "https://api.openai.com/v1"


def quiet_http_logs() -> None:
  """httpx/openai log every request at INFO (absl shows INFO): keep them quiet."""
  for name in ("httpx", "httpx2", "httpcore", "openai"):
    logging.getLogger(name).setLevel(logging.WARNING)


class RequestFailed(Exception):
  """A request that failed for good; `str()` is the one-line reason."""


@dataclasses.dataclass
class Choice:
  text: str
  finish_reason: Optional[str]


@dataclasses.dataclass
class ChatResult:
  choices: list[Choice]
  prompt_tokens: int
  completion_tokens: int
  attempts: int


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
  """How hard to try: attempts in all, backoff base/cap seconds, per-try timeout."""
  max_attempts: int = 6
  backoff_base_s: float = 0.5
  backoff_cap_s: float = 30.0
  timeout_s: float = 60.0


class TokenBucket:
  """An asyncio token bucket: `rate` tokens per second, up to `capacity`."""

  def __init__(self, rate: float, capacity: float):
    self.rate = rate
    self.capacity = max(capacity, 1.0)
    self.tokens = self.capacity
    self.updated = time.monotonic()
    self._lock = asyncio.Lock()

  async def take(self, amount: float = 1.0) -> None:
    amount = min(amount, self.capacity)  # A huge request waits for a full bucket.
    async with self._lock:
      while True:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= amount:
          self.tokens -= amount
          return
        await asyncio.sleep((amount - self.tokens) / self.rate)


def estimate_tokens(messages: list[dict[str, str]], max_tokens: int, n: int = 1) -> int:
  """A cheap upper-ish estimate (4 characters a token) for the TPM limiter."""
  chars = sum(len(m.get("content") or "") for m in messages)
  return chars // 4 + 4 * len(messages) + max_tokens * n


def parse_retry_after(headers: Any) -> Optional[float]:
  """Seconds to wait from `retry-after-ms` / `retry-after` (seconds or a date)."""
  if headers is None:
    return None
  value = headers.get("retry-after-ms")
  if value:
    try:
      return max(0.0, float(value) / 1000.0)
    except ValueError:
      pass
  value = headers.get("retry-after")
  if not value:
    return None
  try:
    return max(0.0, float(value))
  except ValueError:
    pass
  try:
    when = email.utils.parsedate_to_datetime(value)
  except (TypeError, ValueError):
    return None
  return max(0.0, when.timestamp() - time.time())


class ChatClient:
  """Rate-limited, retrying chat completions over `openai.AsyncOpenAI`."""

  def __init__(self, base_url: str, api_key: Optional[str], model: str, concurrency: int = 8,
               rpm: Optional[float] = None, tpm: Optional[float] = None,
               retry: RetryPolicy = RetryPolicy()):
    # Deferred on purpose: the openai package takes ~0.6 s to import and only
    # a run that contacts a server needs it.
    import openai  # pylint: disable=g-import-not-at-top
    quiet_http_logs()
    self._openai = openai
    self._secret = api_key or ""
    self.model = model
    self.retry = retry
    self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or NO_KEY,
                                     max_retries=0, timeout=retry.timeout_s)
    self.semaphore = asyncio.Semaphore(concurrency)
    self.rpm = TokenBucket(rpm / 60.0, max(1.0, rpm / 60.0)) if rpm else None
    self.tpm = TokenBucket(tpm / 60.0, tpm / 6.0) if tpm else None
    self.retries = 0

  def scrub(self, text: str) -> str:
    """`text` with the API key (if any) masked; one line, at most 300 chars."""
    if self._secret and len(self._secret) >= 4:
      text = text.replace(self._secret, "***")
    return " ".join(text.split())[:300]

  async def chat(self, messages: list[dict[str, str]], n: int = 1, temperature: float = 0.0,
                 top_p: float = 1.0, max_tokens: int = 512) -> ChatResult:
    """One chat completion request with `n` choices, retried as configured.

    Raises:
      RequestFailed: it kept failing, or failed with a non-retryable error.
    """
    last_error = "no attempt made"
    for attempt in range(1, self.retry.max_attempts + 1):
      wait = None
      async with self.semaphore:
        if self.rpm:
          await self.rpm.take(1)
        if self.tpm:
          await self.tpm.take(estimate_tokens(messages, max_tokens, n))
        try:
          # The documented raw `post` skips the SDK's per-request typing
          # transform of the (long, few-shot) messages, which cost more CPU
          # than the whole request otherwise; the body is the same JSON.
          response = await self.client.post(
              "/chat/completions", cast_to=object,
              body={"model": self.model, "messages": messages, "n": n,
                    "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens})
          return self._parse(response, attempt)
        except Exception as e:  # pylint: disable=broad-except
          retryable, wait, last_error = self._classify(e)
          if not retryable:
            raise RequestFailed(last_error) from None
      if attempt == self.retry.max_attempts:
        break
      self.retries += 1
      backoff = random.uniform(0, min(self.retry.backoff_cap_s,
                                      self.retry.backoff_base_s * 2 ** (attempt - 1)))
      await asyncio.sleep(max(backoff, wait or 0.0))
    raise RequestFailed(f"{last_error} (gave up after {self.retry.max_attempts} attempts)")

  def _parse(self, response: Any, attempt: int) -> ChatResult:
    """A chat.completion JSON object -> ChatResult (raises _Malformed)."""
    if not isinstance(response, dict):
      raise _Malformed(f"response is a {type(response).__name__}, not a JSON object")
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
      raise _Malformed("response has no choices")
    parsed = []
    for choice in sorted(choices, key=lambda c: (c or {}).get("index") or 0):
      text = ((choice or {}).get("message") or {}).get("content")
      if not isinstance(text, str):
        raise _Malformed("a choice has no message content")
      parsed.append(Choice(text=text, finish_reason=choice.get("finish_reason")))
    usage = response.get("usage") or {}
    return ChatResult(choices=parsed,
                      prompt_tokens=int(usage.get("prompt_tokens") or 0),
                      completion_tokens=int(usage.get("completion_tokens") or 0),
                      attempts=attempt)

  def _classify(self, error: Exception) -> tuple[bool, Optional[float], str]:
    """(retryable, seconds the server asked us to wait, one-line reason)."""
    openai = self._openai
    reason = self.scrub(f"{type(error).__name__}: {error}")
    if isinstance(error, openai.APIStatusError):
      status = error.status_code
      wait = parse_retry_after(getattr(error.response, "headers", None))
      retryable = status in (408, 409, 429) or status >= 500
      return retryable, wait, f"HTTP {status}: {reason}"
    if isinstance(error, (openai.APITimeoutError, openai.APIConnectionError)):
      return True, None, reason
    if isinstance(error, (openai.APIResponseValidationError, _Malformed, json.JSONDecodeError,
                          ValueError, KeyError, TypeError, AttributeError)):
      return True, None, f"malformed response: {reason}"
    if isinstance(error, openai.OpenAIError):
      return True, None, reason
    return True, None, reason

  async def close(self) -> None:
    await self.client.close()


class _Malformed(ValueError):
  pass
