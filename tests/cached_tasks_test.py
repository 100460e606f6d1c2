"""Program datasets as cached seqio tasks: seqio's Beam cache tool, then t5x.train from the cache.

One module-scoped cache is made with the real `python -m
seqio.scripts.cache_tasks_main` (DirectRunner) over two JSONL shards; then
the shards are overwritten with garbage, so any read of the source (a
tokenization pass) would fail: `t5x.train --gin.USE_CACHED_TASKS=True` must
train from the TFRecords alone, and after kill -9 resume bit-identically.
"""

import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest
import seqio

from pad_jax.data import programs
from pad_jax.data import synthetic
from pad_jax.errors import DataError
from pad_jax.t5x_hooks import datasets
from tasks import cached_program_tasks
import train_testlib as tl

TASK = "pad_cached_test"
STEPS = 8
PERIOD = 4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp("cached")
  records = synthetic.generate("train", 120, seed=0)
  shards = root / "programs"
  shards.mkdir()
  programs.write_programs(shards / "programs-00000-of-00002.jsonl", records[:60])
  programs.write_programs(shards / "programs-00001-of-00002.jsonl", records[60:])
  env = tl.subprocess_env(tl.write_program_dataset(root / "other.jsonl"), extra={
      cached_program_tasks.ENV_TASKS: f"{TASK}={shards}/programs-*.jsonl",
      cached_program_tasks.ENV_VOCAB: "@demo"})
  cache = root / "cache"
  result = tl.run([sys.executable, "-m", "seqio.scripts.cache_tasks_main",
                   "--module_import=tasks.cached_program_tasks", f"--tasks={TASK}",
                   f"--output_cache_dir={cache}", "--min_shards=2",
                   "--pipeline_options=--runner=DirectRunner"], env, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  assert (cache / TASK / "COMPLETED").exists()
  return {"records": records, "shards": shards, "cache": cache, "env": env}


def _register(data):
  seqio.add_global_cache_dirs([str(data["cache"])])
  return cached_program_tasks.register_cached_program_task(
      TASK, f"{data['shards']}/programs-*.jsonl", vocabulary=synthetic.demo_vocabulary())


def test_cache_holds_the_vocabulary_ids_of_every_example(data):
  task = _register(data)
  vocabulary = synthetic.demo_vocabulary()
  by_id = {}
  for r in data["records"]:
    by_id.setdefault(r.id, []).append(r)
  seen = 0
  for split in ("train", "validation"):
    ds = task.get_dataset(sequence_length=None, split=split, use_cached=True, shuffle=False)
    for ex in ds.as_numpy_iterator():
      record = by_id[ex["id"].decode()][0]
      # One-at-a-time `CodeT5Vocabulary.encode`, BOS/EOS as the tasks add them.
      assert ex["inputs"].tolist() == [1] + list(vocabulary.encode(record.question)) + [2]
      assert ex["targets"].tolist() == list(vocabulary.encode(record.program)) + [2]
      seen += 1
  assert seen == len(data["records"])
  report = datasets.cached_truncation(task, "train", {"inputs": 64, "targets": 128})
  assert report.examples == task.num_input_examples("train") > 0
  assert not any(report.truncated.values())
  short = datasets.cached_truncation(task, "train", {"inputs": 64, "targets": 20})
  assert short.truncated["targets"] > 0 and len(short.truncated_ids["targets"]) == 5


def test_splits_per_question_and_bad_input():
  ids = [f"q{i}" for i in range(2000)]
  held = [i for i in ids if cached_program_tasks.in_validation(i, 0.05, 0)]
  assert 60 <= len(held) <= 140
  with pytest.raises(DataError, match="no program-dataset file matches"):
    cached_program_tasks.register_cached_program_task("pad_cached_none", "/nonexistent/*.jsonl")


def _garble(shards: pathlib.Path):
  for path in shards.glob("*.jsonl"):
    path.write_text("this is not JSON: reading the source after caching fails\n")


def _wait_for_checkpoint(proc, model_dir, step, timeout=400):
  marker = model_dir / f"checkpoint_{step}" / "commit_success.txt"
  import time  # pylint: disable=g-import-not-at-top
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if marker.exists():
      return True
    time.sleep(0.05)
  return marker.exists()


@pytest.mark.slow  # ~95 s; the uncached twin (tests/train_test.py) resumes after kill -9 by default
def test_t5x_train_from_cache_resumes_bit_identically_after_kill9(data, tmp_path):
  _garble(data["shards"])  # From here on only the cache can feed training.
  extra = [f"--gin.MIXTURE_OR_TASK_NAME='{TASK}'", "--gin.USE_CACHED_TASKS=True",
           f"--seqio_additional_cache_dirs={data['cache']}"]
  env = data["env"]
  reference = tmp_path / "reference"
  result = tl.run(tl.train_argv(reference, STEPS, PERIOD, extra), env)
  assert result.returncode == 0, result.stderr[-4000:]
  assert "examples in memory" not in result.stderr  # The in-memory path did not run.
  assert STEPS in tl.checkpoint_steps(reference)

  killed = tmp_path / "killed"
  argv = tl.train_argv(killed, STEPS, PERIOD, extra)
  with open(tmp_path / "killed.log", "w") as log:
    proc = subprocess.Popen(argv, cwd=tl.REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
      assert _wait_for_checkpoint(proc, killed, PERIOD), (tmp_path / "killed.log").read_text()[-4000:]
      os.kill(proc.pid, signal.SIGKILL)
      proc.wait(timeout=60)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  assert STEPS not in tl.checkpoint_steps(killed)
  result = tl.run(argv, env)
  assert result.returncode == 0, result.stderr[-4000:]
  assert f"Starting main loop over steps {PERIOD}-{STEPS}" in result.stderr, result.stderr[-4000:]
  a = tl.load_params(reference / f"checkpoint_{STEPS}")
  b = tl.load_params(killed / f"checkpoint_{STEPS}")
  assert a.keys() == b.keys()
  assert not [k for k in a if not np.array_equal(a[k], b[k])]
  first = tl.load_params(reference / "checkpoint_0")
  assert any(not np.array_equal(a[k], first[k]) for k in a if "target" in k)
