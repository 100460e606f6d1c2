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
import stepwise_testlib as stl

SHAPE = _t5.SHAPES["tiny"]
EOS = stl.EOS
LENGTH = 48


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
  vocabulary = stl.Vocabulary(SHAPE.vocab_size, stl.newline_ids_of(greedy))
  return model, params, encoded, greedy, vocabulary


@pytest.mark.parametrize("kind", ["pad", "t5x"])
def test_chained_lines_are_greedy(kind):
  model, params, encoded, greedy, vocabulary = _setup(kind)
  proposer = proposer_lib.Proposer(model, params, vocabulary,
                                   max_decode_length=LENGTH, max_step_length=64)
  stl.check_chained_lines_are_greedy(proposer, encoded, greedy, LENGTH)


@pytest.mark.parametrize("kind", ["pad", "t5x"])
def test_continuing_a_cache_row_equals_a_fresh_decode(kind):
  model, params, encoded, _, vocabulary = _setup(kind)
  proposer = proposer_lib.Proposer(model, params, vocabulary,
                                   max_decode_length=LENGTH, temperature=1.0,
                                   seed=3)
  stl.check_continuing_equals_fresh(proposer, encoded)
