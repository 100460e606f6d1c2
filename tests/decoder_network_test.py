"""The decoder-only network: caching, packing, prefix LM, t5x model, gin files.

HF parity of the numerics is `hf_import_decoder_test.py`; here the network
is checked against itself (incremental decoding against full forward
passes, a packed row against its examples alone) and driven by t5x's
`DecoderOnlyModel` (loss, gradients, `predict_batch`).
"""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio
from t5x import adafactor
from t5x import decoding
from t5x import models

from pad_jax.student import decoder_network
from pad_jax.student import hf_import_decoder
from pad_jax.student import model_gin

VOCAB = 64
ATOL = 1e-5
TINY = dict(vocab_size=VOCAB, emb_dim=32, num_heads=4, num_kv_heads=2,
            num_layers=2, head_dim=8, mlp_dim=48, rope_theta=1000.0,
            qkv_bias=True, tie_word_embeddings=False,
            max_position_embeddings=128)


def _module(**overrides):
  return decoder_network.DecoderOnlyTransformer(
      decoder_network.DecoderConfig(**{**TINY, **overrides}))


def _params(module, seed=0):
  ids = jnp.ones((1, 8), jnp.int32)
  params = module.init(jax.random.PRNGKey(seed), ids, ids,
                       enable_dropout=False)["params"]
  # Random biases and norm scales (initialized to 0 / 1) so they matter.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
  leaves = [x + 0.1 * jax.random.normal(k, x.shape) for x, k in
            zip(leaves, keys)]
  return jax.tree.unflatten(tree, leaves)


def _forward(module, params, tokens, **kwargs):
  tokens = jnp.asarray(tokens)
  return np.asarray(module.apply({"params": params}, tokens,
                                 jnp.ones_like(tokens), enable_dropout=False,
                                 **kwargs))


def _naive_greedy(module, params, prompt, length, bidirectional):
  """Greedy ids by full forward passes over the growing sequence.

  Each pass reads the whole sequence, zero-padded to `length` (one compiled
  shape): a position's logits do not see the positions after it.
  """
  forward = jax.jit(lambda tokens, causal: module.apply(
      {"params": params}, tokens, jnp.ones_like(tokens), enable_dropout=False,
      decoder_causal_attention=causal))
  causal = None
  if bidirectional:
    causal = jnp.asarray([[1] * (len(prompt) + 1) + [0] * (length - len(prompt) - 1)])
  tokens = [0, *prompt]
  while len(tokens) < length:
    padded = jnp.asarray([tokens + [0] * (length - len(tokens))])
    logits = np.asarray(forward(padded, causal))
    tokens.append(int(np.argmax(logits[0, len(tokens) - 1])))
  return tokens[len(prompt) + 1:]


@pytest.mark.parametrize("bidirectional", [False, True],
                         ids=["causal", "prefix_lm"])
def test_predict_batch_equals_full_forward_greedy(bidirectional):
  """t5x's prefill + one token per step = recomputing the whole sequence."""
  module = _module()
  params = _params(module)
  length, prompts = 16, [[5, 9, 3], [7, 2, 8, 4, 6, 11, 12]]
  tokens = np.zeros((2, length), np.int32)
  causal = np.zeros_like(tokens)
  for row, prompt in enumerate(prompts):
    tokens[row, 1:len(prompt) + 1] = prompt
    causal[row, :len(prompt) + 1] = 1
  model = models.DecoderOnlyModel(
      module, seqio.PassThroughVocabulary(VOCAB, eos_id=VOCAB), None,
      decode_fn=functools.partial(decoding.temperature_sample,
                                  temperature=0.0),
      inputs_bidirectional_attention=bidirectional)
  ours = np.asarray(model.predict_batch(
      params, {"decoder_input_tokens": jnp.asarray(tokens),
               "decoder_causal_attention": jnp.asarray(causal)}))
  for row, prompt in enumerate(prompts):
    want = _naive_greedy(module, params, prompt, length, bidirectional)
    assert ours[row, :len(want)].tolist() == want


def test_beam_search_scores_equal_full_forward_log_probs():
  """t5x's beam search over the prefilled cache (its index gets a beam axis).

  Prompts of one length: with different lengths t5x's beam search keeps
  adding log-probs of steps past the end to the rows that finish first.
  """
  module = _module()
  params = _params(module)
  length, prompts = 12, [[5, 9, 3, 1], [7, 2, 8, 4]]
  tokens = np.zeros((2, length), np.int32)
  causal = np.zeros_like(tokens)
  for row, prompt in enumerate(prompts):
    tokens[row, 1:len(prompt) + 1] = prompt
    causal[row, :len(prompt) + 1] = 1
  model = models.DecoderOnlyModel(
      module, seqio.PassThroughVocabulary(VOCAB, eos_id=VOCAB), None,
      decode_fn=functools.partial(decoding.beam_search, alpha=0.0))
  seqs, aux = model.predict_batch_with_aux(
      params, {"decoder_input_tokens": jnp.asarray(tokens),
               "decoder_causal_attention": jnp.asarray(causal)},
      num_decodes=3, return_all_decodes=True)
  seqs, scores = np.asarray(seqs), np.asarray(aux["scores"])
  for row, prompt in enumerate(prompts):
    steps = length - len(prompt)  # Up to the prediction at position L - 1.
    assert len({tuple(s[:steps]) for s in seqs[row]}) == 3  # distinct beams
    for beam in range(3):
      full = [0, *prompt, *seqs[row, beam, :steps]]
      log_probs = jax.nn.log_softmax(_forward(module, params, [full])[0])
      want = sum(float(log_probs[i, full[i + 1]])
                 for i in range(len(prompt), length))
      np.testing.assert_allclose(scores[row, beam], want, atol=1e-4)


def test_cache_steps_equal_teacher_forced_logits():
  module = _module(tie_word_embeddings=True)
  params = _params(module)
  tokens = np.random.RandomState(0).randint(1, VOCAB, size=(2, 12))
  full = _forward(module, params, tokens)
  ids = jnp.asarray(tokens)
  _, cache = module.apply({"params": params}, ids, ids, decode=True,
                          enable_dropout=False, mutable=["cache"])
  prefill = 5
  _, cache = module.apply(
      {"params": params, **cache}, ids.at[:, prefill:].set(0),
      jnp.ones_like(ids), prefill=True, prefill_lengths=jnp.full((2,), prefill),
      enable_dropout=False, mutable=["cache"])
  for pos in range(prefill, 12):
    step, cache = module.apply({"params": params, **cache}, ids[:, pos:pos + 1],
                               ids[:, pos:pos + 1], decode=True,
                               enable_dropout=False, mutable=["cache"])
    np.testing.assert_allclose(np.asarray(step)[:, 0], full[:, pos],
                               atol=ATOL, rtol=0)
  assert cache["cache"]["cache_index"].tolist() == [12, 12]


def test_packed_row_equals_its_examples_alone():
  module = _module()
  params = _params(module)
  rng = np.random.RandomState(1)
  first, second = rng.randint(1, VOCAB, size=6), rng.randint(1, VOCAB, size=9)
  packed = np.concatenate([first, second, [0]])[None]
  segments = np.array([[1] * 6 + [2] * 9 + [0]])
  positions = np.array([list(range(6)) + list(range(9)) + [0]])
  logits = np.asarray(module.apply(
      {"params": params}, jnp.asarray(packed), jnp.asarray(packed),
      decoder_segment_ids=jnp.asarray(segments),
      decoder_positions=jnp.asarray(positions), enable_dropout=False))
  np.testing.assert_allclose(logits[0, :6], _forward(module, params,
                                                     [first])[0], atol=ATOL)
  np.testing.assert_allclose(logits[0, 6:15], _forward(module, params,
                                                       [second])[0], atol=ATOL)


def test_prefix_lm_sees_the_whole_prefix_and_no_future_target():
  module = _module()
  params = _params(module)
  tokens = np.random.RandomState(2).randint(1, VOCAB, size=(1, 10))
  changed = tokens.copy()
  changed[0, 3] = (changed[0, 3] + 1) % (VOCAB - 1) + 1  # inside the prefix
  causal = jnp.asarray([[1] * 5 + [0] * 5])
  for mask, earlier_sees_it in ((None, False), (causal, True)):
    a = _forward(module, params, tokens, decoder_causal_attention=mask)
    b = _forward(module, params, changed, decoder_causal_attention=mask)
    assert (not np.allclose(a[0, :3], b[0, :3])) == earlier_sees_it
  changed = tokens.copy()
  changed[0, 8] = (changed[0, 8] + 1) % (VOCAB - 1) + 1  # a target token
  a = _forward(module, params, tokens, decoder_causal_attention=causal)
  b = _forward(module, params, changed, decoder_causal_attention=causal)
  np.testing.assert_array_equal(a[0, :8], b[0, :8])


def test_config_errors_name_the_field():
  ids = jnp.ones((1, 4), jnp.int32)
  for overrides, field in (({"rope_type": "yarn"}, "rope_type"),
                           ({"num_kv_heads": 3}, "num_kv_heads"),
                           ({"head_dim": 7}, "head_dim"),
                           ({"max_position_embeddings": 2},
                            "max_position_embeddings")):
    with pytest.raises(ValueError, match=field):
      _module(**overrides).init(jax.random.PRNGKey(0), ids, ids)


def test_tiny_decoder_gin_loss_and_gradients_on_a_packed_batch():
  """A t5x train step's loss: `DecoderOnlyModel.loss_fn`, packed features."""
  model = model_gin.load_model_from_gin(["models/tiny_decoder.gin"])
  assert isinstance(model, models.DecoderOnlyModel)
  assert isinstance(model.optimizer_def, adafactor.Adafactor)
  assert model.output_vocabulary.vocab_size == 1024
  shapes = {"decoder_input_tokens": (2, 16)}
  types = {"decoder_input_tokens": jnp.int32}
  params = model.get_initial_variables(jax.random.PRNGKey(0), shapes,
                                       types)["params"]
  targets = np.random.RandomState(3).randint(2, 1024, size=(2, 16))
  targets[1, 12:] = 0
  segments = np.array([[1] * 7 + [2] * 9, [1] * 12 + [0] * 4])
  positions = np.array([list(range(7)) + list(range(9)),
                        list(range(12)) + [0] * 4])
  inputs = np.where(positions == 0, 0, np.roll(targets, 1, axis=1))
  batch = {k: jnp.asarray(v) for k, v in {
      "decoder_input_tokens": inputs, "decoder_target_tokens": targets,
      "decoder_loss_weights": (targets > 0).astype(np.float32),
      "decoder_segment_ids": segments, "decoder_positions": positions}.items()}
  (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(
      params, batch, jax.random.PRNGKey(1))
  assert np.isfinite(float(loss)) and float(loss) > 0
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(grads))
  assert all(np.isfinite(np.asarray(g)).all() for g in flat.values())
  assert float(jnp.abs(grads["layers_0"]["self_attention"]["key"]
                       ["kernel"]).max()) > 0


def _gin_model_params(tmp_path, name):
  wrapper = tmp_path / "with_vocab.gin"
  wrapper.write_text(
      "from __gin__ import dynamic_registration\n"
      "import seqio\n"
      f"include 'models/{name}.gin'\n"
      "VOCABULARY = @seqio.PassThroughVocabulary()\n"
      "seqio.PassThroughVocabulary.size = 100\n")
  model = model_gin.load_model_from_gin([str(wrapper)], with_optimizer=False)
  shapes = jax.eval_shape(lambda: model.get_initial_variables(
      jax.random.PRNGKey(0), {"decoder_input_tokens": (1, 8)},
      {"decoder_input_tokens": jnp.int32}))["params"]
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(shapes))
  return {k: tuple(v.shape) for k, v in flat.items()}


# The released models' config.json fields and parameter counts.
RELEASED = {
    "smollm2_135m": ("LlamaConfig", dict(
        vocab_size=49152, hidden_size=576, intermediate_size=1536,
        num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True,
        max_position_embeddings=8192), 134_515_008),
    "qwen2_5_0_5b": ("Qwen2Config", dict(
        vocab_size=151936, hidden_size=896, intermediate_size=4864,
        num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
        max_position_embeddings=32768), 494_032_768),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_model_files_match_the_released_models(tmp_path, name):
  """Shapes only: HF on the meta device, mapped by the importer."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  config_cls, fields, count = RELEASED[name]
  config = getattr(transformers, config_cls)(**fields)
  with torch.device("meta"):
    hf_model = transformers.AutoModelForCausalLM.from_config(config)
  state = {k: np.broadcast_to(np.float32(0), tuple(v.shape))
           for k, v in hf_model.state_dict().items()}
  mapped = hf_import_decoder.convert_params(config.to_dict(), state)
  want = {k: tuple(v.shape) for k, v in
          flax.traverse_util.flatten_dict(mapped).items()}
  got = _gin_model_params(tmp_path, name)
  assert got == want
  assert sum(int(np.prod(s)) for s in got.values()) == count
  assert hf_import_decoder.network_config(config.to_dict())["qkv_bias"] == (
      name == "qwen2_5_0_5b")
