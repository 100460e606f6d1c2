"""The step-wise line decoder on tiny random-weight models (no checkpoint).

`stepwise_decoder.LineDecoder` / `stepwise_proposer.Session` keep the
decoder cache between lines; these tests check that chaining lines gives
exactly the ids of t5x's greedy decoding, over pad-jax's network and t5x's,
and that a row continuing its parent's cache row decodes what a fresh
decode of the same prefix decodes.
"""

import functools

import jax
import numpy as np
import pytest
import seqio
from t5x import decoding
from t5x.examples.t5 import network as t5x_network

from pad_jax.bench import _t5
from pad_jax.decoding import stepwise_proposer as proposer_lib
from pad_jax.student import models
from pad_jax.student import network

SHAPE = _t5.SHAPES["tiny"]
EOS = 1
LENGTH = 48


class _Vocabulary:
  """Just what the proposer reads: size, EOS and which ids hold a newline."""

  def __init__(self, newline):
    self.vocab_size, self.eos_id, self._newline = SHAPE.vocab_size, EOS, newline

  def decode(self, ids):
    return "\n" if ids[0] in self._newline else "x"


def _model(kind):
  if kind == "pad":
    module = network.Transformer(_t5.pad_config(SHAPE, dropout_rate=0.0))
  else:
    module = t5x_network.Transformer(_t5.t5x_config(SHAPE, dropout_rate=0.0))
  vocab = seqio.PassThroughVocabulary(SHAPE.vocab_size, eos_id=EOS)
  return models.EncoderDecoderModel(
      module, vocab, vocab, optimizer_def=None,
      decode_fn=functools.partial(decoding.temperature_sample, temperature=0.0))


def _inputs(n, seed=0):
  rng = np.random.RandomState(seed)
  return [list(rng.randint(3, SHAPE.vocab_size, rng.randint(5, 20))) + [EOS]
          for _ in range(n)]


@functools.lru_cache(maxsize=2)
def _setup(kind):
  model = _model(kind)
  encoded = _inputs(5)
  inputs = np.zeros((len(encoded), 32), np.int32)
  for i, e in enumerate(encoded):
    inputs[i, :len(e)] = e
  batch = {"encoder_input_tokens": inputs,
           "decoder_input_tokens": np.zeros((len(encoded), LENGTH), np.int32)}
  params = model.get_initial_variables(
      jax.random.PRNGKey(0), {k: v.shape for k, v in batch.items()},
      {k: v.dtype for k, v in batch.items()})["params"]
  greedy = np.asarray(model.predict_batch_with_aux(params, batch)[0])
  # Random weights write no structure: make the ids greedy writes at a few
  # positions the "newline" ids, so its programs have lines of mixed length.
  newline = {int(greedy[r, p]) for r in range(len(encoded)) for p in (3, 10)}
  newline -= {EOS, 0}
  return model, params, encoded, greedy, _Vocabulary(newline)


def _until_eos(ids):
  ids = [int(t) for t in ids]
  return ids[:ids.index(EOS) + 1] if EOS in ids else ids


@pytest.mark.parametrize("kind", ["pad", "t5x"])
def test_chained_lines_are_greedy(kind):
  model, params, encoded, greedy, vocabulary = _setup(kind)
  proposer = proposer_lib.Proposer(model, params, vocabulary,
                                   max_decode_length=LENGTH, max_step_length=64)
  # Eight argmax copies of each question's row (64 rows: the last rows of
  # a line finish alone, `stepwise_decoder.STRAGGLER_FRACTION`); the
  # first copy's cache row is the next line's parent.
  copies = 8
  session = proposer.session(encoded, copies)
  programs = {q: () for q in range(len(encoded))}
  rows = {q: None for q in range(len(encoded))}
  lines = {q: 0 for q in range(len(encoded))}
  for _ in range(LENGTH):
    if not programs:
      break
    order = [q for q in sorted(programs) for _ in range(copies)]
    proposals, cache_rows = session.propose(
        order, [rows[q] for q in order], [programs[q] for q in order],
        [True] * len(order))
    for q, proposal, row in list(zip(order, proposals, cache_rows))[::copies]:
      programs[q] += proposal.tokens
      rows[q] = row
      lines[q] += 1
      if proposal.end != proposer_lib.NEWLINE:
        expected = _until_eos(greedy[q])
        # The LENGTH rule stops one id short of the cache's end.
        assert list(programs[q]) == expected[:len(programs[q])], q
        assert len(programs[q]) >= min(len(expected), LENGTH - 1)
        del programs[q]
  assert not programs
  assert max(lines.values()) >= 3  # several lines, of different lengths


@pytest.mark.parametrize("kind", ["pad", "t5x"])
def test_continuing_a_cache_row_equals_a_fresh_decode(kind):
  model, params, encoded, _, vocabulary = _setup(kind)
  proposer = proposer_lib.Proposer(model, params, vocabulary,
                                   max_decode_length=LENGTH, temperature=1.0,
                                   seed=3)
  # 12 candidates per question (the argmax line and samples), in a batch
  # large enough (64 rows) that the last rows finish alone
  # (`stepwise_decoder.STRAGGLER_FRACTION`).
  session = proposer.session(encoded[:3], 16)
  questions = [q for q in range(3) for _ in range(12)]
  first, rows = session.propose(questions, [None] * 36, [()] * 36,
                                [k == 0 for _ in range(3) for k in range(12)])
  by_length = {}
  for i, proposal in enumerate(first):  # parents of different lengths
    by_length.setdefault((questions[i], len(proposal.tokens)), i)
  keep = []
  for q in range(3):  # two parents per question at most: 16 rows
    keep += sorted(i for (p, _), i in by_length.items() if p == q)[:2]
  assert len({len(first[i].tokens) for i in keep}) >= 2
  questions = [questions[i] for i in keep for _ in range(8)]
  parents = [rows[i] for i in keep for _ in range(8)]
  prefixes = [first[i].tokens for i in keep for _ in range(8)]
  second, _ = session.propose(questions, parents, prefixes,
                              [True] * len(questions))
  fresh = proposer.propose([encoded[q] for q in questions], prefixes,
                           [True] * len(questions))
  for a, b in zip(second, fresh):
    assert a.tokens == b.tokens and a.end == b.end
    assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
