"""Step-wise line decoding of a tiny random-weight decoder-only student.

`stepwise_decoder_only.DecoderOnlySteps` lets the line decoder drive a t5x
`DecoderOnlyModel`: the prompt is every row's prefix. Chaining argmax lines
must give exactly the ids of t5x's greedy `predict_batch` (which prefills
the prompt), for prompts of different lengths in one session; a row
continuing its parent's cache row must decode what a fresh decode of the
same prefix decodes; a prefix LM is refused.
"""

import functools

import jax
import numpy as np
import pytest
import seqio
from t5x import decoding
from t5x import models

from pad_jax.decoding import stepwise_decoder_only
from pad_jax.decoding import stepwise_proposer as proposer_lib
from pad_jax.student import decoder_network

VOCAB = 97
EOS = 1
LENGTH = 40  # program ids
PROMPT_ROOM = 24  # the greedy batch's prompt room (BOS + prompt)


class _Vocabulary:
  """Just what the proposer reads: size, EOS and which ids hold a newline."""

  def __init__(self, newline):
    self.vocab_size, self.eos_id, self._newline = VOCAB, EOS, newline

  def decode(self, ids):
    return "\n" if ids[0] in self._newline else "x"


def _model(bidirectional=False):
  module = decoder_network.DecoderOnlyTransformer(decoder_network.DecoderConfig(
      vocab_size=VOCAB, emb_dim=32, num_heads=4, num_kv_heads=2, num_layers=2,
      head_dim=8, mlp_dim=64, tie_word_embeddings=False))
  return models.DecoderOnlyModel(
      module, seqio.PassThroughVocabulary(VOCAB, eos_id=EOS),
      optimizer_def=None,
      decode_fn=functools.partial(decoding.temperature_sample, temperature=0.0),
      inputs_bidirectional_attention=bidirectional)


def _prompts(n, seed=0):
  """Prompts of different lengths (no BOS, no EOS, ids >= 3)."""
  rng = np.random.RandomState(seed)
  return [list(rng.randint(3, VOCAB, length))
          for length in rng.randint(4, PROMPT_ROOM - 2, n)]


@functools.lru_cache(maxsize=1)
def _setup():
  model = _model()
  prompts = _prompts(5)
  width = PROMPT_ROOM + LENGTH
  tokens = np.zeros((len(prompts), width), np.int32)
  causal = np.zeros((len(prompts), width), np.int32)
  for i, ids in enumerate(prompts):
    tokens[i, 1:len(ids) + 1] = ids
    causal[i, :len(ids) + 1] = 1
  params = model.get_initial_variables(
      jax.random.PRNGKey(0), {"decoder_input_tokens": tokens.shape},
      {"decoder_input_tokens": np.int32})["params"]
  decodes = np.asarray(model.predict_batch(
      params, {"decoder_input_tokens": tokens,
               "decoder_causal_attention": causal}))
  greedy = decodes[:, :LENGTH]  # the prompt stripped, as `Decoder` cuts it
  # Random weights write no structure: make the ids greedy writes at a few
  # positions the "newline" ids, so its programs have lines of mixed length.
  newline = {int(greedy[r, p]) for r in range(len(prompts)) for p in (3, 10)}
  newline -= {EOS, 0}
  return model, params, prompts, greedy, _Vocabulary(newline)


def _until_eos(ids):
  ids = [int(t) for t in ids]
  return ids[:ids.index(EOS) + 1] if EOS in ids else ids


def test_chained_lines_are_greedy():
  model, params, prompts, greedy, vocabulary = _setup()
  proposer = proposer_lib.Proposer(model, params, vocabulary,
                                   max_decode_length=LENGTH, max_step_length=64)
  assert proposer.decoder.prompted
  copies = 8  # 64 rows: the last rows of a line finish alone
  session = proposer.session(prompts, copies)
  programs = {q: () for q in range(len(prompts))}
  rows = {q: None for q in range(len(prompts))}
  lines = {q: 0 for q in range(len(prompts))}
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
        assert list(programs[q]) == expected[:len(programs[q])], q
        # The LENGTH rule stops one id short of the program limit.
        assert len(programs[q]) >= min(len(expected), LENGTH - 1)
        assert len(programs[q]) <= LENGTH
        del programs[q]
  assert not programs
  assert max(lines.values()) >= 3  # several lines, of different lengths


def test_continuing_a_cache_row_equals_a_fresh_decode():
  model, params, prompts, _, vocabulary = _setup()
  proposer = proposer_lib.Proposer(model, params, vocabulary,
                                   max_decode_length=LENGTH, temperature=1.0,
                                   seed=3)
  session = proposer.session(prompts[:3], 16)
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
  fresh = proposer.propose([prompts[q] for q in questions], prefixes,
                           [True] * len(questions))
  for a, b in zip(second, fresh):
    assert a.tokens == b.tokens and a.end == b.end
    assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


def test_a_prefix_lm_is_refused():
  with pytest.raises(ValueError, match="prefix LM"):
    stepwise_decoder_only.DecoderOnlySteps(_model(bidirectional=True))
