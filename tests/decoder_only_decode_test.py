"""Decoding a decoder-only student: the same `Decoder`, `decode_file` and command.

One tiny decoder student (models/tiny_decoder.gin) is trained for a few
dozen steps with `python -m t5x.train` on synthetic problems (enough for it
to write `def solution():` programs). Greedy ids from `Decoder` must equal
t5x's own `DecoderOnlyModel.predict_batch` on the batch t5x's prefix-LM
feature converter makes from the task's preprocessors; `python -m
pad_jax.infer` writes programs that run; sample, beam and refinement rounds
go through `decode_file`. Step-wise search (`stepwise_beam`): with one beam
and one candidate it writes greedy's ids, the command writes programs
(with `--step_grounding`), a step verifier (a T5) scores its steps, and a
prefix-LM student is refused with one line, exit 2.
"""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf
from t5x import models

from pad_jax.data import synthetic
from pad_jax.decoding import decoder as decoder_lib
from pad_jax.decoding import files as decode_files
from pad_jax.decoding import stepwise_proposer as proposer_lib
from pad_jax.decoding import stepwise_scorers as scorers_lib
from pad_jax.decoding import stepwise_search as search_lib
from pad_jax.decoding import stepwise_steps as steps_lib
from pad_jax.decoding.settings import DecodeSettings
from pad_jax.errors import ConfigError
from pad_jax.execution import limits
from pad_jax.execution import scoring
from pad_jax.student import model_gin
from tasks import decoder_tasks
import decoder_testlib
import stepwise_testlib as stl
import train_testlib as tl

MAX_DECODE = 96
MAX_INPUT = decoder_testlib.MAX_INPUT


@pytest.fixture(scope="module")
def trained(tiny_decoder_student):
  """(MODEL_DIR, env) of a short t5x.train run of the tiny decoder student (conftest)."""
  return tiny_decoder_student


@pytest.fixture(scope="module")
def questions():
  return [p.question for p in synthetic.generate("test", 3, seed=1)]


def _settings(**kwargs):
  return DecodeSettings(max_decode_length=MAX_DECODE, max_input_length=MAX_INPUT,
                        batch_size=4, **kwargs)


@pytest.fixture(scope="module")
def greedy(trained):
  return decoder_lib.Decoder(str(trained[0]), options=_settings())


def _write_inputs(path, questions):
  with open(path, "w") as f:
    for i, q in enumerate(questions):
      f.write(json.dumps({"id": f"q{i}", "question": q}) + "\n")
  return str(path)


def _read(path):
  return [json.loads(line) for line in open(path)]


def _task_batch(questions, vocabulary, batch_size):
  """The batch t5x.infer feeds a decoder-only task: the task's preprocessors + converter."""
  features = decoder_tasks.decoder_output_features(vocabulary)
  ds = tf.data.Dataset.from_tensor_slices({"inputs": questions,
                                           "targets": [""] * len(questions)})
  ds = decoder_tasks.add_prompt_separator(ds)
  ds = seqio.preprocessors.tokenize(ds, output_features=features)
  ds = seqio.preprocessors.append_eos_after_trim(ds, output_features=features)
  ds = seqio.PrefixLMFeatureConverter(pack=False)(
      ds, {"inputs": MAX_INPUT, "targets": MAX_DECODE})
  rows = list(ds.as_numpy_iterator())
  rows += [rows[0]] * (batch_size - len(rows))
  return {k: np.stack([r[k] for r in rows]).astype(np.int32)
          for k in ("decoder_input_tokens", "decoder_causal_attention")}


def test_greedy_equals_t5x_predict_batch_on_the_task_layout(greedy, questions):
  assert greedy.decoder_only
  assert isinstance(greedy.model, models.DecoderOnlyModel)
  ours = greedy.decode_batch(questions)
  # t5x's class with its default decode_fn (temperature_sample, top-k 1: argmax).
  t5x_model = models.DecoderOnlyModel(module=greedy.model.module,
                                      vocabulary=greedy.vocabulary, optimizer_def=None)
  batch = _task_batch(questions, greedy.vocabulary, greedy.options.batch_size)
  # The prompt rows are ours: BOS + prompt_text(question) ids, no EOS.
  mine = greedy.batch(questions)
  for i in range(len(questions)):
    n = int(batch["decoder_causal_attention"][i].sum())
    assert n == int(mine["decoder_causal_attention"][i].sum())
    np.testing.assert_array_equal(batch["decoder_input_tokens"][i, :n],
                                  mine["decoder_input_tokens"][i, :n])
  theirs = np.asarray(t5x_model.predict_batch(greedy.params, batch,
                                              rng=jax.random.PRNGKey(0)))
  eos = greedy.vocabulary.eos_id
  for row, ids in zip(ours, theirs):
    expected = decoder_lib._until_eos(ids[:MAX_DECODE], eos)  # pylint: disable=protected-access
    assert row["tokens"] == expected
    assert row["prediction"] == greedy.vocabulary.decode(expected)
  assert all(r["prediction"].startswith("def solution():") for r in ours), ours


def _infer_cli(*flags, env):
  return subprocess.run([sys.executable, "-m", "pad_jax.infer", *flags],
                        capture_output=True, text=True, timeout=300,
                        check=False, env=env, cwd=tl.REPO)


def test_infer_greedy_writes_programs_that_run(trained, questions, tmp_path):
  model_dir, env = trained
  inputs = _write_inputs(tmp_path / "in.jsonl", questions)
  out = tmp_path / "out.jsonl"
  proc = _infer_cli(f"--checkpoint_dir={model_dir}", f"--input={inputs}",
                    f"--output={out}", f"--max_decode_length={MAX_DECODE}",
                    f"--max_input_length={MAX_INPUT}", "--batch_size=4", env=env)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert json.loads(proc.stdout.strip().splitlines()[-1])["decoded"] == 3
  rows = _read(out)
  assert [r["id"] for r in rows] == ["q0", "q1", "q2"]
  scored = scoring.score([None] * len(rows), [r["prediction"] for r in rows])
  counts = scoring.summarize(scored)["status_counts"]
  assert counts["ok"] >= 1, (counts, [r["prediction"] for r in rows])


def test_stepwise_one_beam_one_candidate_is_greedy(trained, greedy, tmp_path):
  questions = [p.question for p in synthetic.generate("test", 6, seed=0)]
  inputs = _write_inputs(tmp_path / "in.jsonl", questions)
  decode_files.decode_file(_settings(), str(trained[0]), inputs,
                           str(tmp_path / "g.jsonl"), progress=False)
  decode_files.decode_file(
      _settings(decode="stepwise_beam", beam_size=1, step_candidates=1),
      str(trained[0]), inputs, str(tmp_path / "s.jsonl"), progress=False)
  vocabulary = greedy.vocabulary
  eos = vocabulary.eos_id
  compared = 0
  with limits.ExecLimits(workers=1).executor() as executor:
    for g, s in zip(_read(tmp_path / "g.jsonl"), _read(tmp_path / "s.jsonl")):
      assert g["id"] == s["id"]
      assert all(len(step["kept"]) <= 1 for step in s["steps"])
      if not s["steps"][-1]["pruned"]:  # every line kept: greedy's ids
        n = len(s["tokens"])
        assert s["tokens"] == g["tokens"][:n], (s, g)
      if (g["tokens"][-1:] == [eos] and steps_lib.runnable(
          g["prediction"]).complete and stl.prefixes_run(g["tokens"], vocabulary,
                                               executor)):
        # No prefix of greedy's program fails: the search writes it.
        assert s["complete"] and s["prediction"] == g["prediction"]
        assert s["tokens"] == g["tokens"][:-1]  # stops at `return`
        compared += 1
  assert compared >= 1


def test_stepwise_lines_chained_are_greedy(greedy, questions):
  """The proposer alone (no sandbox): argmax lines from kept caches."""
  proposer = proposer_lib.Proposer(greedy.model, greedy.params, greedy.vocabulary,
                                   max_decode_length=MAX_DECODE)
  expected = [r["tokens"] for r in greedy.decode_batch(questions)]
  session = proposer.session([greedy.encode(q) for q in questions], 1)
  programs, rows = [()] * 3, [None] * 3
  todo = [0, 1, 2]
  while todo:
    proposals, cache_rows = session.propose(
        todo, [rows[q] for q in todo], [programs[q] for q in todo],
        [True] * len(todo))
    for q, proposal, row in zip(list(todo), proposals, cache_rows):
      programs[q] += proposal.tokens
      rows[q] = row
      assert list(programs[q]) == expected[q][:len(programs[q])], q
      if proposal.end != proposer_lib.NEWLINE:
        todo.remove(q)
  assert all(len(p) >= min(len(e), MAX_DECODE - 1)
             for p, e in zip(programs, expected))


def test_infer_stepwise_writes_programs(trained, questions, tmp_path):
  model_dir, env = trained
  inputs = _write_inputs(tmp_path / "in.jsonl", questions)
  out = tmp_path / "out.jsonl"
  proc = _infer_cli(f"--checkpoint_dir={model_dir}", f"--input={inputs}",
                    f"--output={out}", f"--max_decode_length={MAX_DECODE}",
                    f"--max_input_length={MAX_INPUT}", "--batch_size=4",
                    "--decode=stepwise_beam", "--beam_size=2",
                    "--step_candidates=2", "--step_grounding", env=env)
  assert proc.returncode == 0, proc.stderr[-4000:]
  rows = _read(out)
  assert [r["id"] for r in rows] == ["q0", "q1", "q2"]
  for row in rows:
    assert row["steps"] and all(len(s["kept"]) <= 2 for s in row["steps"])
    assert row["prediction"].startswith("def solution():"), row
  assert any(r["complete"] for r in rows)
  scored = scoring.score([None] * len(rows), [r["prediction"] for r in rows])
  assert scoring.summarize(scored)["status_counts"]["ok"] >= 1


def test_stepwise_scores_steps_with_a_t5_verifier(greedy, questions):
  """The verifier reads text: any T5 (random weights here) scores the steps."""
  verifier = model_gin.load_model_from_gin(["models/tiny.gin"], (), [
      ".", model_gin.GIN_CONFIGS_DIR], with_optimizer=False)
  shapes = {"encoder_input_tokens": (1, MAX_INPUT), "decoder_input_tokens": (1, 8)}
  params = verifier.get_initial_variables(
      jax.random.PRNGKey(0), shapes, {k: np.int32 for k in shapes})["params"]
  calls = []

  class Counting(scorers_lib.VerifierScorer):
    def score(self, candidates):
      calls.append(len(candidates))
      return super().score(candidates)

  scorer = scorers_lib.GroundedScorer(scorers_lib.CombinedScorer(
      Counting(verifier, params, verifier.output_vocabulary, MAX_INPUT), 0.5))
  proposer = proposer_lib.Proposer(greedy.model, greedy.params, greedy.vocabulary,
                                   max_decode_length=MAX_DECODE, seed=1)
  with limits.ExecLimits(workers=1).executor() as executor:
    search = search_lib.StepwiseSearch(proposer, executor, scorer, beam_size=2,
                                       step_candidates=2, max_steps=3)
    results = search.search(questions[:2],
                            [greedy.encode(q) for q in questions[:2]])
  assert len(calls) == 3 and sum(calls) >= 2 * 3
  for result in results:
    assert result["steps"] and result["prediction"].startswith("def solution():")
    assert result["score"] is not None and np.isfinite(result["score"])


def test_stepwise_refuses_a_prefix_lm_with_one_line(trained, questions, tmp_path):
  model_dir, env = trained
  prefix_lm = "models.DecoderOnlyModel.inputs_bidirectional_attention = True"
  with pytest.raises(ConfigError, match="--decode=stepwise_beam: not supported "
                     "for a prefix-LM student"):
    decoder_lib.Decoder(str(model_dir), options=_settings(decode="stepwise_beam"),
                        gin_bindings=[prefix_lm])
  inputs = _write_inputs(tmp_path / "in.jsonl", questions)
  proc = _infer_cli(f"--checkpoint_dir={model_dir}", f"--input={inputs}",
                    f"--output={tmp_path / 'out.jsonl'}", "--decode=stepwise_beam",
                    f"--gin_bindings={prefix_lm}", env=env)
  assert proc.returncode == 2, proc.stderr[-2000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: --decode=stepwise_beam: not supported"), last
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("mode", [dict(decode="sample", num_decodes=3),
                                  dict(decode="beam", beam_size=2, num_decodes=2)])
def test_sample_and_beam_write_k_decodes(trained, questions, tmp_path, mode):
  inputs = _write_inputs(tmp_path / "in.jsonl", questions)
  out = str(tmp_path / "out.jsonl")
  summary = decode_files.decode_file(_settings(**mode), str(trained[0]), inputs, out,
                                     progress=False)
  assert summary["decoded"] == 3
  k = mode["num_decodes"]
  for row in _read(out):
    assert len(row["predictions"]) == len(row["scores"]) == k
    assert row["prediction"] == row["predictions"][0]
    assert row["scores"] == sorted(row["scores"], reverse=True)
  if mode["decode"] == "sample":  # self-consistency scoring takes K programs
    scored = scoring.score([None] * 3, [r["predictions"] for r in _read(out)])
    assert [s["num_programs"] for s in scored] == [3, 3, 3]


def test_refine_rounds_decode_the_refinement_prompt(trained, questions, tmp_path):
  inputs = _write_inputs(tmp_path / "in.jsonl", questions)
  out = str(tmp_path / "out.jsonl")
  summary = decode_files.decode_file(_settings(refine_rounds=1), str(trained[0]),
                                     inputs, out, progress=False)
  assert summary["refine"]["rounds"] == 1 and summary["refine"]["questions"] == 3
  for row in _read(out):
    assert [r["round"] for r in row["rounds"]][0] == 0
    assert len(row["rounds"]) == (2 if row["rounds"][0]["needs_refinement"] else 1)
    assert row["prediction"] == row["rounds"][-1]["prediction"]
