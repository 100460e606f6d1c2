"""kill -9 in the middle of `python -m pad_jax.synthesize`, then resume.

The CLI runs as a subprocess with the real openai client talking to the
loopback fake server over 127.0.0.1; it is SIGKILLed once some completions
are on disk, and re-run to the end.
"""

import collections
import json
import os
import signal
import subprocess
import sys
import time

from fake_openai import FakeOpenAI, prompt_digest
from teacher_testlib import GoldResponder, assert_secret_not_on_disk, gsm8k_examples, read_jsonl
from pad_jax.data.programs import read_programs
from pad_jax.teacher import prompts
from pad_jax.teacher import synthesize as synth
from pad_jax.execution.limits import ExecLimits

SECRET = "sk-test-kill9-5b1d0e4c8a"
LIMIT, SAMPLES = 30, 2


def _command(server, out_dir):
  return [sys.executable, "-m", "pad_jax.synthesize", "--teacher=openai",
          f"--base_url={server.base_url}", "--model=fake-teacher", "--benchmark=gsm8k",
          "--split=train", f"--limit={LIMIT}", f"--samples={SAMPLES}", "--concurrency=4",
          f"--out_dir={out_dir}", "--progress=false", "--workers=1"]


def _env():
  return dict(os.environ, OPENAI_API_KEY=SECRET, JAX_PLATFORMS="cpu")


def _count_lines(path):
  try:
    with open(path, "rb") as f:
      return f.read().count(b"\n")
  except FileNotFoundError:
    return 0


def test_kill9_then_resume_loses_and_duplicates_nothing(shared_data, tmp_path):
  examples = gsm8k_examples(shared_data, LIMIT)
  out_dir = tmp_path / "out"
  completions = out_dir / "completions.jsonl"
  with FakeOpenAI(GoldResponder(examples), latency_s=0.15, api_key=SECRET) as server:
    proc = subprocess.Popen(_command(server, out_dir), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _count_lines(completions) < 12 and time.monotonic() < deadline:
      assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
      time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with server.lock:
      sent_first = [r["prompt_digest"] for r in server.requests]
    raw = completions.read_bytes()
    # What survived the kill: every complete row (a torn tail is allowed).
    survived = [json.loads(line) for line in raw.split(b"\n")[:-1] if line.strip()]
    assert 12 <= len(survived) < LIMIT * SAMPLES
    finished = {prompt_digest(prompts.build_messages(r["question"], r["prompt_variant"]))
                for r in survived}
    in_flight_at_kill = len(sent_first) - len(survived)
    assert 0 <= in_flight_at_kill <= 4  # At most --concurrency requests were in flight.

    result = subprocess.run(_command(server, out_dir), env=_env(), capture_output=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    with server.lock:
      sent_second = [r for r in server.requests[len(sent_first):]]

  rows = read_jsonl(completions)
  keys = [r["key"] for r in rows]
  assert len(keys) == len(set(keys)) == LIMIT * SAMPLES  # 0 lost, 0 duplicated.
  assert {r["key"] for r in survived} <= set(keys)
  # Finished requests were not sent again: the second run sent only the rest.
  resent = [r for r in sent_second if r["prompt_digest"] in finished]
  assert not resent
  assert len(sent_second) == LIMIT * SAMPLES - len(survived)
  per_prompt = collections.Counter(sent_first + [r["prompt_digest"] for r in sent_second])
  assert max(per_prompt.values()) <= 2  # Only prompts in flight at the kill went twice.
  assert sum(v - 1 for v in per_prompt.values()) <= in_flight_at_kill
  # Outputs are complete and the key never reached the disk.
  programs = read_programs(out_dir / "programs.jsonl")
  report = json.loads((out_dir / "report.json").read_text())
  assert report["completions"] == LIMIT * SAMPLES and report["kept"] == len(programs) > 0
  assert "kept" in result.stdout.decode()
  assert_secret_not_on_disk(out_dir, SECRET)
  assert SECRET not in (result.stdout + result.stderr).decode()  # Nor in the logs.


def test_torn_last_line_is_tolerated(shared_data, tmp_path):
  examples = gsm8k_examples(shared_data, 3)
  with FakeOpenAI(GoldResponder(examples), api_key=SECRET) as server:
    config = synth.OpenAIConfig(base_url=server.base_url, model="fake-teacher", samples=SAMPLES,
                                progress=False)
    synth.synthesize_openai(examples, tmp_path, config, api_key=SECRET, verify=False)
    path = tmp_path / "completions.jsonl"
    lines = path.read_bytes().split(b"\n")
    # Simulate a write torn by a kill: the last row half written, no newline.
    path.write_bytes(b"\n".join(lines[:-2]) + b"\n" + lines[-2][: len(lines[-2]) // 2])
    sent = len(server.requests)
    report = synth.synthesize_openai(examples, tmp_path, config, api_key=SECRET,
                                     limits=ExecLimits(workers=1))
    assert len(server.requests) == sent + 1  # Only the torn row is redone.
  rows = read_jsonl(tmp_path / "completions.jsonl")
  assert len(rows) == len({r["key"] for r in rows}) == 3 * SAMPLES
  assert report["completions"] == 3 * SAMPLES


def test_bad_flags_and_input_exit_2_with_one_line(tmp_path):
  data_dir = tmp_path / "data"
  (data_dir / "gsm8k").mkdir(parents=True)
  (data_dir / "gsm8k" / "train.jsonl").write_text(
      '{"question": "Q?", "answer": "2 + 2 = <<2+2=4>>4\\n#### 4"}\n{"question": "Q2?"}\n')
  cases = [
      (["--teacher=openai", "--base_url=ftp://nowhere", f"--out_dir={tmp_path}"], "base_url"),
      (["--teacher=gold", "--benchmark=svamp", f"--out_dir={tmp_path}"], "rationales"),
      (["--teacher=gold", "--split=dev", f"--out_dir={tmp_path}"], "split"),
      (["--teacher=gold"], "--out_dir"),
      (["--teacher=gold", f"--out_dir={tmp_path}", "stray"], "unexpected arguments"),
      (["--teacher=openai", "--prompt_variants=1,42", f"--out_dir={tmp_path}"], "variant"),
      (["--teacher=gold", "--workers=0", f"--out_dir={tmp_path}"], "ExecLimits.workers"),
      (["--teacher=gold", "--memory_mb=8", f"--out_dir={tmp_path}"], "ExecLimits.memory_mb"),
      (["--teacher=gold", f"--data_dir={data_dir}", f"--out_dir={tmp_path}"],
       f"{data_dir}/gsm8k/train.jsonl:2: field 'answer'"),
  ]
  for flags, expected in cases:
    result = subprocess.run([sys.executable, "-m", "pad_jax.synthesize", *flags],
                            capture_output=True, timeout=60, env=_env())
    error = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2, (flags, error)
    assert len(error) == 1 and error[0].startswith("error:") and expected in error[0], error


def test_help_lists_the_executor_flags():
  result = subprocess.run([sys.executable, "-m", "pad_jax.synthesize", "--help"],
                          capture_output=True, timeout=60, env=_env())
  text = result.stdout.decode()
  for flag in ("--teacher", "--request_timeout_s", "--workers", "--timeout_s", "--memory_mb",
               "--mode", "--exec_mode", "--isolation"):
    assert f"{flag}:" in text, flag
  assert "--exec_workers" not in text and "--exec_timeout_s" not in text
