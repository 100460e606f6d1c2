"""pad_jax.decoding.beam_search gives t5x's `decoding.beam_search` ids and scores.

A synthetic decoder whose state (the cache) depends on every beam's history,
so a wrong reorder changes the results, with EOS likely enough that beams
finish at different steps: plain, with a forced prompt, with prompts started
at `initial_index`, with the scanned-layers cache layout (`cache_offset=1`);
the same with a cache read through an ancestors table (kept in place by
pad_jax's search, reordered by t5x's); then a tiny random pad-jax model
through `pad_jax.student.models`, and its attention through an ancestors table
against the attention over a reordered cache.
"""

import functools
import subprocess
import sys
import textwrap

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio
from t5x import decoding

from conftest import REPO, subprocess_env
from pad_jax.decoding import beam_search
from pad_jax.student import attention
from pad_jax.student import models
from pad_jax.student import network

VOCAB, DIM, EOS = 12, 8, 1


def _tokens_to_logits(offset, state):
  """Next-token logits from a cache that accumulates the tokens decoded."""
  rng = np.random.RandomState(1)
  emb = jnp.asarray(rng.randn(VOCAB, DIM), jnp.float32)
  out = jnp.asarray(rng.randn(DIM, VOCAB), jnp.float32)
  cache = state.cache
  x = cache["layer"]["state"]
  tok = emb[state.cur_token[:, 0]]
  x = 0.7 * x + (tok[None] if offset else tok)
  last = x[-1] if offset else x
  logits = last @ out + jnp.zeros((VOCAB,)).at[EOS].set(0.5)
  return logits, {"layer": {"state": x,
                            "cached_bias": cache["layer"]["cached_bias"]}}


def _history_logits(state):
  """Next-token logits from every token so far, read through the ancestors.

  The protocol of `pad_jax.student.network`'s self-attention: a row writes its
  token at position `cache_index` of its own storage row and reads position
  k of its sequence from row `ancestors[g, i, k]` of its input `g`.
  """
  rng = np.random.RandomState(1)
  emb = jnp.asarray(rng.randn(VOCAB, DIM), jnp.float32)
  out = jnp.asarray(rng.randn(DIM, VOCAB), jnp.float32)
  layer = state.cache["layer"]
  index, stored = layer["cache_index"], layer["stored"]
  table = layer[beam_search.ANCESTORS]
  groups, beams, length = table.shape
  stored = lax.dynamic_update_slice(
      stored, emb[state.cur_token[:, 0]][:, None], (0, index, 0))
  table = lax.dynamic_update_slice(
      table, jnp.broadcast_to(jnp.arange(beams)[:, None], (groups, beams, 1)),
      (0, 0, index))
  rows = (jnp.arange(groups)[:, None, None] * beams + table).reshape(
      -1, length)
  history = stored[rows, jnp.arange(length)]  # [rows, length, DIM]
  position = jnp.arange(length)
  decay = 0.7 ** jnp.abs(index - position)
  logits = jnp.einsum("rld,l->rd", history, decay) @ out
  logits += jnp.zeros((VOCAB,)).at[EOS].set(0.5)
  return logits, {"layer": {"stored": stored, beam_search.ANCESTORS: table,
                            "cache_index": index + 1}}


@pytest.mark.parametrize("case", ["plain", "prompt", "initial_index",
                                  "offset", "alpha0", "ancestors"])
def test_same_as_t5x_beam_search(case):
  batch, length = 3, 9
  offset = 1 if case == "offset" else 0
  shape = (2, batch, DIM) if offset else (batch, DIM)
  cache = {"layer": {"state": jnp.asarray(
      np.random.RandomState(2).randn(*shape), jnp.float32),
                     "cached_bias": jnp.ones((4,))}}
  fn = functools.partial(_tokens_to_logits, offset)
  if case == "ancestors":
    cache = {"layer": {
        "stored": jnp.asarray(np.random.RandomState(3).randn(
            batch, length + 1, DIM), jnp.float32),
        beam_search.ANCESTORS: jnp.zeros((batch, 1, length + 1), jnp.int32),
        "cache_index": jnp.array(0, jnp.int32)}}
    fn = _history_logits
  inputs = np.zeros((batch, length), np.int32)
  kwargs = dict(eos_id=EOS, num_decodes=4, cache_offset=offset,
                alpha=0.0 if case == "alpha0" else 0.6)
  if case in ("prompt", "initial_index"):
    inputs[0, :3] = [5, 6, 7]
    inputs[2, :1] = [4]
  if case == "initial_index":
    kwargs["initial_index"] = jnp.asarray((inputs != 0).sum(1), jnp.int32)
  theirs = jax.jit(lambda i, c: decoding.beam_search(i, c, fn, **kwargs))(
      inputs, cache)
  ours = jax.jit(lambda i, c: beam_search.beam_search(i, c, fn, **kwargs))(
      inputs, cache)
  assert ours[0].shape == (batch, 4, length)
  np.testing.assert_array_equal(ours[0], theirs[0])
  np.testing.assert_array_equal(ours[1], theirs[1])
  finished = np.asarray(ours[0]) == EOS
  assert finished.any() and not finished.any(-1).all()  # Both kinds occur.


def test_ancestor_attention_is_attention_over_the_reordered_cache():
  groups, beams, heads, length, depth = 2, 3, 2, 5, 4
  rows = groups * beams
  rng = np.random.RandomState(0)
  query, key, value = (jnp.asarray(rng.randn(*s), jnp.float32) for s in (
      (rows, 1, heads, depth), (rows, heads, length, depth),
      (rows, heads, length, depth)))
  bias = jnp.asarray(rng.randn(rows, heads, 1, length), jnp.float32)
  ancestors = jnp.asarray(rng.randint(0, beams, (groups, beams, length)),
                          jnp.int32)
  source = (np.arange(groups)[:, None, None] * beams
            + np.asarray(ancestors)).reshape(rows, length)
  position = np.arange(length)
  reordered = [x[source, :, position].transpose(0, 2, 1, 3)
               for x in (np.asarray(key), np.asarray(value))]
  ours = attention.cached_attention(query, key, value, bias, jnp.float32,
                                    True, ancestors=ancestors)
  theirs = attention.cached_attention(query, *reordered, bias, jnp.float32,
                                      True)
  np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_same_as_t5x_through_the_model():
  shape = dict(vocab_size=64, emb_dim=32, num_heads=4, num_encoder_layers=2,
               num_decoder_layers=2, head_dim=8, mlp_dim=64, dropout_rate=0.0,
               logits_via_embedding=True, float32_attention_logits=True)
  module = network.Transformer(network.T5Config(**shape))
  enc = np.random.RandomState(0).randint(2, 64, (2, 10)).astype(np.int32)
  enc[1, 7:] = 0
  batch = {"encoder_input_tokens": enc,
           "decoder_input_tokens": np.zeros((2, 7), np.int32)}
  vocab = seqio.PassThroughVocabulary(64, eos_id=1)
  results = []
  for decode_fn in (decoding.beam_search, beam_search.beam_search):
    model = models.EncoderDecoderModel(module, vocab, vocab, None,
                                       decode_fn=decode_fn)
    params = model.get_initial_variables(
        jax.random.PRNGKey(0), {k: v.shape for k, v in batch.items()},
        {k: v.dtype for k, v in batch.items()})["params"]
    ids, aux = jax.jit(lambda p, b, m=model: m.predict_batch_with_aux(
        p, b, num_decodes=3, return_all_decodes=True))(params, batch)
    results.append((np.asarray(ids), np.asarray(aux["scores"])))
  # t5x's search reorders the cache; pad_jax's keeps it in place and the
  # attention reads it through the ancestors (sums in another order).
  np.testing.assert_array_equal(results[1][0], results[0][0])
  np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-6)


def test_t5x_infer_run_file_selects_this_beam_search():
  # As `python -m t5x.infer` parses the flags `runs/pad_infer.gin` documents
  # for beam search; the model's decode_fn is then this module's, alpha 0.6.
  code = textwrap.dedent("""
      from t5x.infer import infer  # `import __main__ as infer_script`
      import gin
      from t5x import gin_utils
      gin_utils.parse_gin_flags(
          ["gin_configs"], ["models/codet5_small.gin", "runs/pad_infer.gin"],
          ["CHECKPOINT_PATH='/x'", "INFER_OUTPUT_DIR='/tmp/x'",
           "MIXTURE_OR_TASK_NAME='pad_eval_gsm8k'",
           "DECODE_FN=@beam_search.beam_search", "NUM_DECODES=4"])
      model = gin.query_parameter("MODEL/macro.value").scoped_configurable_fn()
      print(model._decode_fn.__module__,
            model._default_decoder_params.num_decodes,
            gin.query_parameter("pad_jax.decoding.beam_search.beam_search.alpha"))
      """)
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                          env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ["pad_jax.decoding.beam_search", "4", "0.6"]
