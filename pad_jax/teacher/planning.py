"""Request planning for the `openai` teacher: what to ask, and the cache rows of an answer.

Shared by online synthesis (`pad_jax.teacher.synthesize`) and the Batch API
(`pad_jax.teacher.batch`), which both import it; it imports neither.

* `OpenAIConfig`: the teacher's settings (server, sampling, limits, budget);
* `plan_requests`: the chat requests still to make for some questions (one
  `Request` per prompt variant and sample group, minus finished samples);
* `completion_rows`: the `completions.jsonl` rows of one response.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Optional, Sequence

from pad_jax.errors import ConfigError
from pad_jax.teacher import cache as cache_lib
from pad_jax.teacher import client as client_lib
from pad_jax.teacher import cost as cost_lib
from pad_jax.teacher import prompts


@dataclasses.dataclass(frozen=True)
class OpenAIConfig:
  """Settings of the `openai` teacher (mirrors the CLI flags).

  Attributes:
    base_url: the server, e.g. https://api.openai.com/v1 or a vLLM/SGLang/
      llama.cpp server's http://host:port/v1.
    model: the model name the server expects.
    samples: completions per question.
    variants: prompt variants to use; sample k uses variants[k % len].
    temperature, top_p, max_tokens: sampling parameters.
    concurrency: requests in flight at most.
    rpm, tpm: requests / tokens per minute limits (None: unlimited).
    retry: attempts, backoff and per-attempt timeout.
    max_cost_usd: stop launching requests once the estimated spend of this
      output directory reaches this (None: no cap). Needs known prices.
    price_input_per_mtok, price_output_per_mtok: override the price table.
    use_n: ask for the samples of one (question, variant) with `n` in one
      request instead of repeated requests.
    batch: use the OpenAI Batch API instead of online requests.
    batch_poll_s: seconds between Batch API status polls.
    progress: show a tqdm progress bar.
  """
  base_url: str = client_lib.OPENAI_BASE_URL
  model: str = "gpt-4o-mini"
  samples: int = 1
  variants: tuple[int, ...] = tuple(range(prompts.NUM_VARIANTS))
  temperature: float = 0.7
  top_p: float = 1.0
  max_tokens: int = 512
  concurrency: int = 16
  rpm: Optional[float] = None
  tpm: Optional[float] = None
  retry: client_lib.RetryPolicy = client_lib.RetryPolicy()
  max_cost_usd: Optional[float] = None
  price_input_per_mtok: Optional[float] = None
  price_output_per_mtok: Optional[float] = None
  use_n: bool = False
  batch: bool = False
  batch_poll_s: float = 10.0
  progress: bool = True

  def validate(self) -> None:
    """Raises ConfigError naming the first impossible field."""
    checks = [
        ("samples", self.samples >= 1, "must be >= 1"),
        ("concurrency", self.concurrency >= 1, "must be >= 1"),
        ("variants", bool(self.variants) and all(
            0 <= v < prompts.NUM_VARIANTS for v in self.variants),
         f"must be prompt variants in [0, {prompts.NUM_VARIANTS})"),
        ("temperature", 0 <= self.temperature <= 2, "must be in [0, 2]"),
        ("top_p", 0 < self.top_p <= 1, "must be in (0, 1]"),
        ("max_tokens", self.max_tokens >= 1, "must be >= 1"),
        ("base_url", self.base_url.startswith(("http://", "https://")),
         "must start with http:// or https://"),
    ] + [(name, getattr(self, name) is None or getattr(self, name) > 0, "must be > 0")
         for name in ("rpm", "tpm", "max_cost_usd")]
    for field, ok, expected in checks:
      if not ok:
        raise ConfigError(f"OpenAIConfig.{field}: {expected}, got {getattr(self, field)!r}")


@dataclasses.dataclass
class Request:
  """One chat request: `len(samples)` samples of one question and variant."""
  example: Any
  variant: int
  samples: list[int]
  keys: list[str]
  messages: list[dict[str, str]]


def plan_requests(examples: Sequence[Any], config: OpenAIConfig,
                  done: Optional[set[str]] = None) -> tuple[list[Request], int]:
  """The requests still to make, and how many samples are already done."""
  done = done or set()
  params = {"temperature": config.temperature, "top_p": config.top_p,
            "max_tokens": config.max_tokens}
  requests, finished = [], 0
  for example in examples:
    by_variant: dict[int, list[int]] = collections.defaultdict(list)
    for sample in range(config.samples):
      by_variant[config.variants[sample % len(config.variants)]].append(sample)
    for variant, samples in by_variant.items():
      messages = prompts.build_messages(example.question, variant)
      pending = []
      for sample in samples:
        key = cache_lib.request_key(config.model, messages, params, example.id, sample)
        if key in done:
          finished += 1
        else:
          pending.append((sample, key))
      groups = [pending] if config.use_n else [[p] for p in pending]
      for group in groups:
        if group:
          requests.append(Request(example, variant, [s for s, _ in group], [k for _, k in group],
                                  messages))
  return requests, finished


def completion_rows(request: Request, result: client_lib.ChatResult, config: OpenAIConfig,
                    prices: Optional[cost_lib.Prices]) -> list[dict[str, Any]]:
  """Cache rows for the choices of one response (usage split over them)."""
  rows = []
  count = len(request.samples)
  share, extra = divmod(result.completion_tokens, count)
  for i, (sample, key) in enumerate(zip(request.samples, request.keys)):
    if i >= len(result.choices):
      break
    usage = {"prompt_tokens": result.prompt_tokens if i == 0 else 0,
             "completion_tokens": share + (extra if i == 0 else 0)}
    choice = result.choices[i]
    rows.append({
        "key": key, "id": request.example.id, "sample": sample,
        "prompt_variant": request.variant, "question": request.example.question,
        "answer": request.example.answer, "text": choice.text, "model": config.model,
        "teacher": config.model, "finish_reason": choice.finish_reason, "usage": usage,
        "cost_usd": prices.cost(usage["prompt_tokens"], usage["completion_tokens"]) if prices
                    else 0.0,
        "attempts": result.attempts,
    })
  return rows
