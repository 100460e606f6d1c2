"""Online synthesis with the real openai client against the loopback fake server."""

import time

import pytest

from fake_openai import FakeOpenAI, prompt_digest
from teacher_testlib import (WRONG_MARK, GoldResponder, assert_secret_not_on_disk,
                             gsm8k_examples, read_jsonl)
from pad_jax.data.programs import read_programs
from pad_jax.teacher import client as client_lib
from pad_jax.teacher import cost as cost_lib
from pad_jax.teacher import prompts
from pad_jax.teacher import synthesize as synth
from pad_jax.execution.limits import ExecLimits

SECRET = "sk-test-3f9a1c77b2e04d5e"
VERIFY = ExecLimits(workers=1, timeout_s=5.0)


@pytest.fixture(scope="module")
def examples(shared_data):
  return gsm8k_examples(shared_data, 24)


def _config(server, **overrides):
  settings = dict(base_url=server.base_url, model="gpt-4o-mini", samples=2, concurrency=8,
                  retry=client_lib.RetryPolicy(max_attempts=4, backoff_base_s=0.02,
                                               timeout_s=10.0),
                  progress=False)
  settings.update(overrides)
  return synth.OpenAIConfig(**settings)


def test_faults_retried_wrong_programs_dropped_key_hygiene(examples, tmp_path):
  faults = {"429": 0.08, "500": 0.08, "truncate": 0.08, "malformed": 0.08, "drop": 0.08,
            "slow": 0.04, "fail_always": 0.06}
  with FakeOpenAI(GoldResponder(examples), faults=faults, api_key=SECRET, slow_s=3.0,
                  retry_after_s=0.05) as server:
    retry = client_lib.RetryPolicy(max_attempts=5, backoff_base_s=0.02, timeout_s=1.5)
    report = synth.synthesize_openai(examples, tmp_path, _config(server, retry=retry),
                                     api_key=SECRET, limits=VERIFY)
    requests = list(server.requests)
    auth = set(server.auth_headers)
  assert auth == {f"Bearer {SECRET}"}
  # Every injected transient fault was retried.
  faulted = {r["digest"] for r in requests if r["fault"] not in (None, "fail_always")}
  assert faulted, "the fault mix should hit some requests"
  for digest in faulted:
    assert any(r["digest"] == digest and r["fault"] is None for r in requests)
  completions = read_jsonl(tmp_path / "completions.jsonl")
  failed = read_jsonl(tmp_path / "failed.jsonl")
  assert len(completions) + len(failed) == 2 * len(examples)
  assert failed and all("HTTP 500" in f["error"] for f in failed)  # Only fail_always is final.
  assert len({c["key"] for c in completions}) == len(completions)
  # Sample 1 (prompt variant 1) is always wrong: dropped; sample 0 kept.
  kept = read_programs(tmp_path / "programs.jsonl")
  assert kept and all(WRONG_MARK not in r.program for r in kept)
  assert {r.prompt_variant for r in kept} == {0}
  assert all("print(" not in r.program for r in kept)  # Extracted, not raw.
  assert report["kept"] == len(kept) == report["correct"][report["mode"]]
  no_gold = sum(1 for c in completions if "not sure" in c["text"])  # Question 23 has none.
  assert report["extraction_failures"] == no_gold
  assert report["wrong_answer"] == sum(
      1 for c in completions if c["prompt_variant"] == 1 and "not sure" not in c["text"])
  assert report["pass_rate_by_variant"]["1"]["pass_rate"] == 0.0
  assert report["failed_requests"] == len(failed)
  assert report["tokens"]["total_tokens"] > 0 and report["cost_usd"] > 0
  assert (tmp_path / "report.png").stat().st_size > 1000
  assert_secret_not_on_disk(tmp_path, SECRET)


def test_retry_after_is_honoured(examples, tmp_path):
  with FakeOpenAI(GoldResponder(examples), faults={"429": 1.0}, retry_after_s=0.4) as server:
    config = _config(server, samples=1, variants=(0,), concurrency=1,
                     retry=client_lib.RetryPolicy(max_attempts=3, backoff_base_s=0.001))
    synth.synthesize_openai(examples[:2], tmp_path, config, api_key=SECRET, verify=False)
    requests = list(server.requests)
  assert len(requests) == 4  # Each: a 429, then the retry succeeds.
  for digest in {r["digest"] for r in requests}:
    first, retry = [r for r in requests if r["digest"] == digest]
    assert first["fault"] == "429" and retry["fault"] is None
    assert retry["time"] - first["time"] >= 0.38


def test_budget_cap_stops_cleanly_and_resumes(examples, tmp_path):
  with FakeOpenAI(GoldResponder(examples)) as server:
    capped = _config(server, samples=1, variants=(0,), concurrency=2, max_cost_usd=0.02,
                     price_input_per_mtok=1.0, price_output_per_mtok=1.0)
    report = synth.synthesize_openai(examples, tmp_path, capped, api_key=SECRET,
                                     limits=VERIFY)
    first = read_jsonl(tmp_path / "completions.jsonl")
    spent = sum(r["cost_usd"] for r in first)
    per_request = spent / len(first)
    assert report["stopped"] == "max_cost_usd"
    assert 0 < len(first) < len(examples)
    assert 0.02 <= spent <= 0.02 + 3 * per_request
    # Same cap: nothing more is sent.
    sent = len(server.requests)
    again = synth.synthesize_openai(examples, tmp_path, capped, api_key=SECRET, verify=False)
    assert again["stopped"] == "max_cost_usd" and len(server.requests) == sent
    # A higher cap finishes the job without redoing anything.
    raised = _config(server, samples=1, variants=(0,), concurrency=2, max_cost_usd=10.0,
                     price_input_per_mtok=1.0, price_output_per_mtok=1.0)
    final = synth.synthesize_openai(examples, tmp_path, raised, api_key=SECRET,
                                    limits=VERIFY)
    assert len(server.requests) == sent + len(examples) - len(first)
  rows = read_jsonl(tmp_path / "completions.jsonl")
  assert len(rows) == len({r["key"] for r in rows}) == len(examples)
  assert final["stopped"] is None and final["completions"] == len(examples)
  assert final["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows), abs=1e-6)


def test_use_n_and_cache_keys(examples, tmp_path):
  few = examples[:4]
  with FakeOpenAI(GoldResponder(few)) as server:
    config = _config(server, samples=3, variants=(2,), use_n=True)
    report = synth.synthesize_openai(few, tmp_path, config, api_key=SECRET, limits=VERIFY)
    assert len(server.requests) == 4 and {r["n"] for r in server.requests} == {3}
    assert report["completions"] == 12
    # Same command: all cached, nothing sent.
    synth.synthesize_openai(few, tmp_path, config, api_key=SECRET, verify=False)
    assert len(server.requests) == 4
    # Another model (or prompt) means new keys: everything is requested again.
    synth.synthesize_openai(few, tmp_path, _config(server, samples=3, variants=(2,), use_n=True,
                                                   model="other-model"),
                            api_key=SECRET, verify=False)
    assert len(server.requests) == 8
  rows = read_jsonl(tmp_path / "completions.jsonl")
  assert len(rows) == len({r["key"] for r in rows}) == 24
  digest = prompt_digest(prompts.build_messages(few[0].question, 2))
  assert digest in {r["prompt_digest"] for r in server.requests}


def test_key_from_file_and_missing_key(tmp_path, monkeypatch):
  monkeypatch.delenv("OPENAI_API_KEY", raising=False)
  with pytest.raises(ValueError, match="OPENAI_API_KEY"):
    synth.resolve_api_key("https://api.openai.com/v1")
  assert synth.resolve_api_key("http://127.0.0.1:8000/v1") is None  # Local servers need none.
  key_file = tmp_path / "key"
  key_file.write_text(SECRET + "\n")
  assert synth.resolve_api_key("https://api.openai.com/v1", api_key_file=key_file) == SECRET
  monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
  assert synth.resolve_api_key("https://api.openai.com/v1") == "sk-from-env"
  with pytest.raises(ValueError, match="empty"):
    (tmp_path / "empty").write_text("")
    synth.resolve_api_key("x", api_key_file=tmp_path / "empty")


def test_cost_table_and_errors():
  assert cost_lib.lookup_prices("gpt-4o-mini-2024-07-18").input_per_mtok == 0.15
  assert cost_lib.lookup_prices("gpt-4o-mini", batch=True).output_per_mtok == 0.30
  assert cost_lib.lookup_prices("my-local-model") is None
  assert cost_lib.lookup_prices("x", 2.0, 4.0).cost(1_000_000, 500_000) == pytest.approx(4.0)
  config = synth.OpenAIConfig(model="my-local-model", max_cost_usd=1.0, progress=False,
                              base_url="http://127.0.0.1:9/v1")
  with pytest.raises(ValueError, match="price"):
    synth.synthesize_openai([], "/tmp/unused-pad-teacher", config, api_key="k", verify=False)


def test_retry_after_parsing():
  assert client_lib.parse_retry_after({"retry-after": "2"}) == 2.0
  assert client_lib.parse_retry_after({"retry-after-ms": "250"}) == 0.25
  assert client_lib.parse_retry_after({"retry-after": "soon"}) is None
  date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
  assert 25 <= client_lib.parse_retry_after({"retry-after": date}) <= 31


def test_prompt_variants():
  assert prompts.NUM_VARIANTS >= 8
  texts = {str(prompts.build_messages("Q?", v)) for v in range(prompts.NUM_VARIANTS)}
  assert len(texts) == prompts.NUM_VARIANTS
  fingerprints = {prompts.prompt_fingerprint(v) for v in range(prompts.NUM_VARIANTS)}
  assert len(fingerprints) == prompts.NUM_VARIANTS
  assert prompts.parse_variants("all") == list(range(prompts.NUM_VARIANTS))
  assert prompts.parse_variants("3,1") == [3, 1]
  with pytest.raises(ValueError):
    prompts.parse_variants("99")
  # The exemplar programs are right (checked by running them).
  expected = [126, 78, 14, 41, 30, 12]
  for (question, program), answer in zip(prompts._EXEMPLARS, expected):
    namespace = {}
    exec(program, namespace)  # Our own exemplars.
    assert namespace["solution"]() == pytest.approx(answer), question


def test_requests_per_minute_limit(examples, tmp_path):
  with FakeOpenAI(GoldResponder(examples)) as server:
    config = _config(server, samples=1, variants=(0,), concurrency=8, rpm=120)  # 2 per second.
    synth.synthesize_openai(examples[:6], tmp_path, config, api_key=SECRET, verify=False)
    times = sorted(r["time"] for r in server.requests)
  assert len(times) == 6
  # A burst of 2 (one second's worth), then one every 0.5 s.
  assert times[-1] - times[0] >= 1.9


def test_token_bucket_limits_tokens_per_second():
  import asyncio  # pylint: disable=g-import-not-at-top

  async def take_all():
    bucket = client_lib.TokenBucket(rate=1000.0, capacity=500.0)  # 1000 tokens/s.
    start = time.monotonic()
    for _ in range(4):
      await bucket.take(500)  # 2000 tokens: 500 at once, 1500 at 1000/s.
    return time.monotonic() - start

  assert asyncio.run(take_all()) >= 1.45
