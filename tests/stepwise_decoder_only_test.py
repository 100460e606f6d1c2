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
import stepwise_testlib as stl

VOCAB = 97
EOS = stl.EOS
LENGTH = 40  # program ids
PROMPT_ROOM = 24  # the greedy batch's prompt room (BOS + prompt)


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
  vocabulary = stl.Vocabulary(VOCAB, stl.newline_ids_of(greedy))
  return model, params, prompts, greedy, vocabulary


def test_chained_lines_are_greedy():
  model, params, prompts, greedy, vocabulary = _setup()
  proposer = proposer_lib.Proposer(model, params, vocabulary,
                                   max_decode_length=LENGTH, max_step_length=64)
  assert proposer.decoder.prompted
  stl.check_chained_lines_are_greedy(proposer, prompts, greedy, LENGTH)


def test_continuing_a_cache_row_equals_a_fresh_decode():
  model, params, prompts, _, vocabulary = _setup()
  proposer = proposer_lib.Proposer(model, params, vocabulary,
                                   max_decode_length=LENGTH, temperature=1.0,
                                   seed=3)
  stl.check_continuing_equals_fresh(proposer, prompts)


def test_a_prefix_lm_is_refused():
  with pytest.raises(ValueError, match="prefix LM"):
    stepwise_decoder_only.DecoderOnlySteps(_model(bidirectional=True))
