"""Step-wise verified beam search (`--decode=stepwise_beam`) on a tiny t5x student.

The student is models/tiny.gin trained by `python -m t5x.train` for a few
hundred steps on 16 synthetic programs (enough to write program lines); the
search decodes synthetic test questions with it.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pad_jax.decoding import decoder as decoder_lib
from pad_jax.decoding import files as decode_files
from pad_jax.decoding.settings import DecodeSettings
from pad_jax.data import synthetic
from pad_jax.execution import limits
from pad_jax.decoding import stepwise_proposer as proposer_lib
from pad_jax.decoding import stepwise_scorers as scorers
from pad_jax.decoding import stepwise_search as search_lib
from pad_jax.decoding import stepwise_steps as steps
from pad_jax.stepwise import verifier_data as builder
from tasks import verifier_tasks
import stepwise_testlib as stl
import train_testlib as tl

STEPS = 200
MAX_DECODE = 128


@pytest.fixture(scope="module")
def student(tmp_path_factory):
  """(MODEL_DIR, env) of the tiny student."""
  tmp = tmp_path_factory.mktemp("stepwise_student")
  env = tl.subprocess_env(tl.write_program_dataset(tmp / "programs.jsonl",
                                                   n=16))
  model_dir = tmp / "run"
  result = tl.run(tl.train_argv(model_dir, STEPS, STEPS, extra=[
      "--gin.EVAL_STEPS=1", "--gin.EVALUATOR_NUM_EXAMPLES=2",
      "--gin.LEARNING_RATE=3e-3", "--gin.WARMUP_STEPS=10"],
      jsonl=tmp / "programs.jsonl"), env)
  assert result.returncode == 0, result.stderr[-4000:]
  return model_dir, env


def _write_questions(path, n, split="test"):
  with open(path, "w") as f:
    for r in synthetic.generate(split, n, seed=0):
      f.write(json.dumps({"id": r.id, "question": r.question,
                          "answer": r.answer}) + "\n")
  return str(path)


def _read(path):
  return [json.loads(line) for line in open(path)]


def test_one_beam_one_candidate_is_greedy(student, tmp_path):
  model_dir, _ = student
  questions = _write_questions(tmp_path / "in.jsonl", 8)
  common = dict(max_decode_length=MAX_DECODE, max_input_length=64, batch_size=3)
  decode_files.decode_file(DecodeSettings(decode="greedy", **common), str(model_dir),
                           questions, str(tmp_path / "g.jsonl"), progress=False)
  decode_files.decode_file(
      DecodeSettings(decode="stepwise_beam", beam_size=1, step_candidates=1, **common),
      str(model_dir), questions, str(tmp_path / "s.jsonl"), progress=False)
  greedy, stepwise = _read(tmp_path / "g.jsonl"), _read(tmp_path / "s.jsonl")
  decoder = decoder_lib.Decoder(str(model_dir), options=DecodeSettings(
      max_decode_length=8))
  vocabulary = decoder.vocabulary
  eos = vocabulary.eos_id
  compared = 0
  with limits.ExecLimits(workers=1).executor() as executor:
    for g, s in zip(greedy, stepwise):
      assert g["id"] == s["id"]
      assert all(len(step["kept"]) <= 1 for step in s["steps"])
      ends_at_return = (g["tokens"][-1:] == [eos] and steps.runnable(
          g["prediction"]).complete)
      if ends_at_return and stl.prefixes_run(g["tokens"], vocabulary, executor):
        # No prefix of greedy's program fails: the search writes it.
        assert s["complete"], s["steps"]
        assert s["prediction"] == g["prediction"]
        assert s["tokens"] == g["tokens"][:-1]  # stops at `return`
        assert not any(step["pruned"] for step in s["steps"])
        # The score is the length-normalized log-probability t5x gives.
        total = _score_batch(decoder, s["question"], s["tokens"])
        assert s["score"] * len(s["tokens"]) == pytest.approx(total, abs=1e-3)
        compared += 1
      else:
        assert any(step["pruned"] for step in s["steps"]) or not s["complete"]
  assert compared >= 2, (greedy, stepwise)


def _score_batch(decoder, question, tokens):
  """log p(tokens | question) by t5x `score_batch`."""
  encoded = decoder.encode(question)
  batch = {"encoder_input_tokens": np.zeros((1, 64), np.int32),
           "decoder_input_tokens": np.zeros((1, MAX_DECODE), np.int32),
           "decoder_target_tokens": np.zeros((1, MAX_DECODE), np.int32),
           "decoder_loss_weights": np.zeros((1, MAX_DECODE), np.float32)}
  batch["encoder_input_tokens"][0, :len(encoded)] = encoded
  batch["decoder_target_tokens"][0, :len(tokens)] = tokens
  batch["decoder_input_tokens"][0, 1:len(tokens)] = tokens[:-1]
  batch["decoder_loss_weights"][0, :len(tokens)] = 1.0
  return float(decoder.model.score_batch(decoder.params, batch)[0])


class _PlantingProposer:
  """The real proposer, with a failing line planted as every beam's 2nd
  candidate (a runtime error, a NaN, a syntax error, in turn)."""

  FAILING = (" zz = 1 / 0", " zz = float('nan')", " zz = = 1")

  def __init__(self, proposer):
    self.proposer, self.vocabulary = proposer, proposer.vocabulary
    self.calls = 0
    newline = proposer_lib.newline_ids(self.vocabulary)
    self.newline_id = int(newline.nonzero()[0][-1])

  def session(self, encoded, rows_per_question):
    return _PlantingSession(self, self.proposer.session(encoded,
                                                        rows_per_question))


class _PlantingSession:

  def __init__(self, planter, session):
    self.planter, self.session = planter, session

  def propose(self, questions, parents, prefixes, argmax, line=True):
    p = self.planter
    proposals, rows = self.session.propose(questions, parents, prefixes,
                                           argmax, line)
    planted = p.FAILING[p.calls % len(p.FAILING)]
    tokens = tuple(p.vocabulary.encode(planted)) + (p.newline_id,)
    p.calls += 1
    return [proposer_lib.Proposal(tokens, q.logprob, proposer_lib.NEWLINE)
            if i % 3 == 1 else q for i, q in enumerate(proposals)], rows


class _CountingExecutor:
  def __init__(self, executor):
    self.executor, self.calls = executor, []

  def run(self, programs):
    programs = list(programs)
    self.calls.append(programs)
    return self.executor.run(programs)


def test_failing_prefixes_are_executed_and_pruned(student):
  model_dir, _ = student
  decoder = decoder_lib.Decoder(str(model_dir), options=DecodeSettings(
      decode="stepwise_beam", max_decode_length=MAX_DECODE,
      max_input_length=64))
  proposer = _PlantingProposer(proposer_lib.Proposer(
      decoder.model, decoder.params, decoder.vocabulary,
      max_decode_length=MAX_DECODE, seed=1))
  questions = [r.question for r in synthetic.generate("test", 4, seed=0)]
  with limits.ExecLimits(workers=1).executor() as real:
    executor = _CountingExecutor(real)
    search = search_lib.StepwiseSearch(proposer, executor,
                                       scorers.LogProbScorer(), beam_size=2,
                                       step_candidates=3)
    results = search.search(questions, [decoder.encode(q) for q in questions])
    # One batched executor call per step, for both questions.
    assert len(executor.calls) == proposer.calls
    assert any(any(p and "zz = 1 / 0" in p for p in c) for c in executor.calls)
    pruned, complete = {}, 0
    for result in results:
      for step in result["steps"]:
        assert len(step["kept"]) <= 2
        assert [k["score"] for k in step["kept"]] == sorted(
            [k["score"] for k in step["kept"]], reverse=True)
        for reason, count in step["pruned"].items():
          pruned[reason] = pruned.get(reason, 0) + count
        assert not any("zz" in k["line"] for k in step["kept"])
      # Complete programs that run, written without the planted lines.
      assert "zz" not in result["prediction"]
      if not result["complete"]:
        continue
      complete += 1
      assert result["prediction"].rstrip().splitlines()[-1].strip().startswith(
          "return")
      (final,) = real.run([result["prediction"]])
      assert final.ok, (final, result["prediction"])
  assert complete >= 2
  assert pruned.get("runtime_error") and pruned.get("bad_return")
  assert pruned.get("syntax_error")


def test_resumes_after_kill_9(student, tmp_path):
  model_dir, env = student
  questions = _write_questions(tmp_path / "in.jsonl", 4)
  out = tmp_path / "out.jsonl"
  argv = [sys.executable, "-m", "pad_jax.infer", f"--checkpoint_dir={model_dir}",
          f"--input={questions}", f"--output={out}", "--decode=stepwise_beam",
          "--beam_size=2", "--step_candidates=2", "--batch_size=1",
          f"--max_decode_length={MAX_DECODE}", "--max_input_length=64",
          "--seed=0"]
  proc = subprocess.Popen(argv, cwd=tl.REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, start_new_session=True)
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None:
    if out.exists() and out.read_text().count("\n") >= 1:
      break
    time.sleep(0.2)
  assert proc.poll() is None, proc.stderr.read()[-3000:]
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  before = out.read_text()
  finished = before[:before.rfind("\n") + 1]
  done = finished.count("\n")
  assert 1 <= done < 4
  with open(out, "a") as f:
    f.write('{"id": "torn", "predic')  # a torn last line is cut and redone
  result = subprocess.run(argv, cwd=tl.REPO, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads(result.stdout.strip().splitlines()[-1])
  assert (summary["skipped"], summary["decoded"]) == (done, 4 - done)
  text = out.read_text()
  assert text.startswith(finished)  # finished questions never redone
  rows = _read(out)
  assert sorted(r["id"] for r in rows) == sorted(
      r["id"] for r in _read(questions))
  assert all("steps" in r and "complete" in r for r in rows)


# ------------------------------------------------------------------------------
# The step verifier: data from the student, the seqio task, t5x.train, scoring.
# ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def verifier_data(student, tmp_path_factory):
  """Labelled prefixes of 6 training questions (with gold programs), plus one
  planted wrong program and one planted failing program."""
  model_dir, _ = student
  tmp = tmp_path_factory.mktemp("verifier")
  rows = [{"id": r.id, "question": r.question, "answer": r.answer,
           "program": r.program} for r in synthetic.generate("train", 6, seed=0)]
  header = "def solution():\n    a = 3\n"
  rows[4]["program"] = header + "    b = a + 1\n    return b\n"   # 4 != gold
  rows[5]["program"] = header + "    b = a / 0\n    return b\n"   # raises
  path = tmp / "questions.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  out = tmp / "verifier.jsonl"
  summary = builder.build(str(model_dir), str(path), str(out), samples=1,
                          completions=2, max_decode_length=MAX_DECODE,
                          max_input_length=64, batch_size=3, progress=False,
                          limits=limits.ExecLimits(workers=1))
  assert (summary["written"], summary["total"]) == (6, 6)
  again = builder.build(str(model_dir), str(path), str(out), progress=False)
  assert (again["written"], again["skipped"]) == (0, 6)  # resumed: nothing redone
  return rows, out, summary


def test_verifier_data_labels_prefixes_by_completions(verifier_data):
  rows, out, summary = verifier_data
  labelled = _read(out)
  assert [r["id"] for r in labelled] == [r["id"] for r in rows]
  assert summary["prefixes"] == sum(len(r["prefixes"]) for r in labelled)
  for row, source in zip(labelled, rows):
    gold = [p for p in row["prefixes"] if p["source"] == "gold"]
    assert [p["prefix"] for p in gold] == [
        source["program"][:i + 1] for i, ch in enumerate(source["program"])
        if ch == "\n"][1:]
    for p in row["prefixes"]:
      assert p["label"] == ("correct" if p["reached"] > 0 else "wrong")
      if p["completions"]:
        assert 0 <= p["reached"] <= p["completions"] == 2
    # The whole gold program is judged by its own answer.
    assert gold[-1]["completions"] == 0
    assert gold[-1]["label"] == ("correct" if row is not labelled[4]
                                 and row is not labelled[5] else "wrong")
  failing = [p for p in labelled[5]["prefixes"] if "a / 0" in p["prefix"]]
  assert failing and all(p["label"] == "wrong" and p["completions"] == 0
                         for p in failing)


def test_verifier_trains_on_t5x_and_scores_the_search(student, verifier_data,
                                                      tmp_path):
  _, out, summary = verifier_data
  task = verifier_tasks.register_verifier_task(
      "pad_step_verifier_test", str(out), synthetic.demo_vocabulary())
  examples = list(task.get_dataset(
      {"inputs": 256, "targets": 8}, split="train", shuffle=False).take(100)
      .as_numpy_iterator())
  validation = task.num_input_examples("validation")
  assert len(examples) + validation == summary["prefixes"]
  assert {synthetic.demo_vocabulary().decode(e["targets"].tolist())
          for e in examples} <= {"correct", "wrong"}

  model_dir, env = student
  verifier_dir = tmp_path / "verifier"
  result = tl.run([
      sys.executable, "-m", "t5x.train", "--gin_search_paths=gin_configs",
      "--gin_file=models/tiny.gin", "--gin_file=runs/step_verifier.gin",
      f"--gin.MODEL_DIR='{verifier_dir}'", f"--gin.VERIFIER_DATA='{out}'",
      "--gin.TRAIN_STEPS=3", "--gin.EVAL_PERIOD=3", "--gin.EVAL_STEPS=1",
      "--gin.EVALUATOR_NUM_EXAMPLES=2", "--gin.WARMUP_STEPS=1",
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 256, 'targets': 8}"], env)
  assert result.returncode == 0, result.stderr[-4000:]
  assert 3 in tl.checkpoint_steps(verifier_dir)

  questions = _write_questions(tmp_path / "in.jsonl", 2)
  scored = tmp_path / "scored.jsonl"
  decode_files.decode_file(
      DecodeSettings(decode="stepwise_beam", beam_size=2, step_candidates=2,
                     step_verifier=str(verifier_dir), step_verifier_weight=1.0,
                     max_decode_length=MAX_DECODE,
                     max_input_length=256, batch_size=2),
      str(model_dir), questions, str(scored), progress=False)
  verifier = decoder_lib.Decoder(str(verifier_dir), options=DecodeSettings(
      max_decode_length=8, max_input_length=256))
  scorer = scorers.VerifierScorer(verifier.model, verifier.params,
                                  verifier.vocabulary, 256)
  for row in _read(scored):
    for step in row["steps"]:
      kept = [k["score"] for k in step["kept"]]
      assert kept == sorted(kept, reverse=True)
      assert all(s <= 0 for s in kept)  # log p("correct" | two labels)
    if row["score"] is not None:
      (again,) = scorer.score([scorers.Candidate(
          row["question"], row["prediction"], len(row["tokens"]), 0.0)])
      assert again == pytest.approx(row["score"], abs=1e-4)
