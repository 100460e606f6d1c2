"""Batch API mode against the fake server's files and batches endpoints."""

import json

import pytest

from fake_openai import FakeOpenAI
from teacher_testlib import WRONG_MARK, GoldResponder, gsm8k_examples, read_jsonl
from pad_jax.data.programs import read_programs
from pad_jax.teacher import batch as batch_lib
from pad_jax.teacher import synthesize as synth
from pad_jax.execution.limits import ExecLimits

SECRET = "sk-test-batch-77c2e9"
VERIFY = ExecLimits(workers=1)


def _config(server, **overrides):
  settings = dict(base_url=server.base_url, model="gpt-4o-mini", samples=2, variants=(0, 1),
                  batch=True, batch_poll_s=0.02, progress=False)
  settings.update(overrides)
  return synth.OpenAIConfig(**settings)


def test_batch_flow_matches_online_outputs(shared_data, tmp_path):
  examples = gsm8k_examples(shared_data, 10)
  with FakeOpenAI(GoldResponder(examples), api_key=SECRET, faults={"fail_always": 0.1}) as server:
    report = synth.synthesize_openai(examples, tmp_path / "batch", _config(server),
                                     api_key=SECRET, limits=VERIFY)
    assert len(server.batches) == 1
    first_failed = read_jsonl(tmp_path / "batch" / "failed.jsonl")
    # Re-running resubmits only the requests that failed.
    synth.synthesize_openai(examples, tmp_path / "batch", _config(server), api_key=SECRET,
                            verify=False)
    assert len(server.batches) == 2
    retried = read_jsonl(tmp_path / "batch" / "batch_input_1.jsonl")
    assert sorted(l["custom_id"] for l in retried) == sorted(f["key"] for f in first_failed)
  with FakeOpenAI(GoldResponder(examples), api_key=SECRET) as server:  # No faults.
    online = synth.synthesize_openai(examples, tmp_path / "online", _config(server, batch=False),
                                     api_key=SECRET, limits=VERIFY)
  state = json.loads((tmp_path / "batch" / batch_lib.STATE_FILE).read_text())
  assert [b["merged"] for b in state["batches"]] == [True, True]
  lines = read_jsonl(tmp_path / "batch" / "batch_input_0.jsonl")
  assert len(lines) == 20 and len({l["custom_id"] for l in lines}) == 20
  assert all(l["url"] == "/v1/chat/completions" and l["body"]["model"] == "gpt-4o-mini"
             for l in lines)
  completions = read_jsonl(tmp_path / "batch" / "completions.jsonl")
  failed = first_failed
  assert len(completions) + len(failed) == 20
  assert failed and all(f["error"].startswith("HTTP 500") for f in failed)
  # Same rows (keys, texts) as the online mode produced for the same requests.
  online_rows = {r["key"]: r["text"] for r in read_jsonl(tmp_path / "online" / "completions.jsonl")}
  assert {r["key"]: r["text"] for r in completions}.items() <= online_rows.items()
  kept = read_programs(tmp_path / "batch" / "programs.jsonl")
  assert kept and all(WRONG_MARK not in r.program for r in kept)
  assert report["kept"] == len(kept) <= online["kept"]
  # Batch pricing: half the online price for the same tokens.
  assert report["cost_usd"] == pytest.approx(
      0.5 * sum(r["cost_usd"] for r in read_jsonl(tmp_path / "online" / "completions.jsonl")
                if r["key"] in {c["key"] for c in completions}), abs=2e-6)


def test_batch_resume_after_crash_polls_the_same_batch(shared_data, tmp_path, monkeypatch):
  examples = gsm8k_examples(shared_data, 4)
  real_wait = batch_lib._wait

  def crash(*args, **kwargs):
    raise KeyboardInterrupt("killed while polling")

  with FakeOpenAI(GoldResponder(examples), api_key=SECRET) as server:
    monkeypatch.setattr(batch_lib, "_wait", crash)
    with pytest.raises(KeyboardInterrupt):
      synth.synthesize_openai(examples, tmp_path, _config(server), api_key=SECRET, verify=False)
    assert len(server.batches) == 1 and not (tmp_path / "completions.jsonl").read_text()
    monkeypatch.setattr(batch_lib, "_wait", real_wait)
    report = synth.synthesize_openai(examples, tmp_path, _config(server), api_key=SECRET,
                                     limits=VERIFY)
    assert len(server.batches) == 1  # Not submitted (and paid for) twice.
  rows = read_jsonl(tmp_path / "completions.jsonl")
  assert len(rows) == len({r["key"] for r in rows}) == 8
  assert report["completions"] == 8


def test_batch_resume_after_crash_between_upload_and_create(shared_data, tmp_path, monkeypatch):
  examples = gsm8k_examples(shared_data, 3)
  real_create = batch_lib._create
  calls = []

  def create_then_crash(client, entry, state, state_path):
    real_create(client, entry, state.copy() | {"batches": []}, tmp_path / "ignored.json")
    calls.append(entry["batch_id"])
    raise KeyboardInterrupt("killed before the batch id was saved")

  with FakeOpenAI(GoldResponder(examples), api_key=SECRET) as server:
    monkeypatch.setattr(batch_lib, "_create", create_then_crash)
    with pytest.raises(KeyboardInterrupt):
      synth.synthesize_openai(examples, tmp_path, _config(server), api_key=SECRET, verify=False)
    state = json.loads((tmp_path / batch_lib.STATE_FILE).read_text())
    assert state["batches"][0]["batch_id"] is None and len(server.batches) == 1
    monkeypatch.setattr(batch_lib, "_create", real_create)
    report = synth.synthesize_openai(examples, tmp_path, _config(server), api_key=SECRET,
                                     verify=False)
    assert len(server.batches) == 1  # Found by its input file, not created again.
  assert report["completions"] == 6
  assert json.loads((tmp_path / batch_lib.STATE_FILE).read_text())["batches"][0]["batch_id"] == (
      calls[0])
