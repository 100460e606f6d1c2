"""pad_jax.student.models.EncoderDecoderModel decodes exactly as t5x's model class.

Tiny networks, a few decoding steps: greedy, sampling with several decodes
and beam search give the same ids and scores with the cross-attention
keys/values projected once (pad-jax's network) as t5x's stock class, which
projects them at every step; with t5x's example network the class is t5x's.
"""

import functools

import jax
import numpy as np
import pytest
import seqio
from t5x import decoding
from t5x import losses
from t5x import models as t5x_models
from t5x.examples.t5 import layers
from t5x.examples.t5 import network as t5x_network

from pad_jax.student import attention
from pad_jax.student import kernels
from pad_jax.student import models
from pad_jax.student import network

VOCAB = 64
EOS = 1
SHAPE = dict(vocab_size=VOCAB, emb_dim=32, num_heads=4, num_encoder_layers=2,
             num_decoder_layers=2, head_dim=8, mlp_dim=64, dropout_rate=0.0,
             logits_via_embedding=True, float32_attention_logits=True)
DECODE_FNS = {
    "greedy": (functools.partial(decoding.temperature_sample, topk=1), 1),
    "sample": (functools.partial(decoding.temperature_sample, temperature=1.0,
                                 topk=0), 3),
    "beam": (decoding.beam_search, 3),
}


def _batch(steps=6):
  enc = np.random.RandomState(0).randint(2, VOCAB, (2, 10)).astype(np.int32)
  enc[1, 7:] = 0  # Padding: the cross-attention mask matters.
  return {"encoder_input_tokens": enc,
          "decoder_input_tokens": np.zeros((2, steps), np.int32)}


def _params(model, batch):
  return model.get_initial_variables(
      jax.random.PRNGKey(0), {k: v.shape for k, v in batch.items()},
      {k: v.dtype for k, v in batch.items()})


def _predict(model_cls, module, decode_fn, num_decodes, params, batch):
  vocab = seqio.PassThroughVocabulary(VOCAB, eos_id=EOS)
  model = model_cls(module, vocab, vocab, None, decode_fn=decode_fn)
  ids, aux = jax.jit(lambda p, b: model.predict_batch_with_aux(
      p, b, rng=jax.random.PRNGKey(3), num_decodes=num_decodes,
      return_all_decodes=True))(params, batch)
  return np.asarray(ids), np.asarray(aux["scores"])


@pytest.mark.parametrize("mode", sorted(DECODE_FNS))
def test_same_decodes_as_t5x_model_class(mode):
  decode_fn, num_decodes = DECODE_FNS[mode]
  module = network.Transformer(network.T5Config(**SHAPE))
  batch = _batch()
  params = _params(t5x_models.EncoderDecoderModel(module, None, None, None),
                   batch)["params"]
  theirs = _predict(t5x_models.EncoderDecoderModel, module, decode_fn,
                    num_decodes, params, batch)
  ours = _predict(models.EncoderDecoderModel, module, decode_fn, num_decodes,
                  params, batch)
  assert ours[0].shape == (2, num_decodes, 6)
  np.testing.assert_array_equal(ours[0], theirs[0])
  np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-5)


def test_initial_variables_gain_no_collection():
  """Train states and checkpoints hold what they held with t5x's class."""
  module = network.Transformer(network.T5Config(**SHAPE))
  model = models.EncoderDecoderModel(module, None, None, None)
  assert set(_params(model, _batch())) == {"params", "params_axes"}


def test_cross_attention_kv_shapes():
  module = network.Transformer(network.T5Config(**SHAPE))
  model = models.EncoderDecoderModel(module, None, None, None)
  batch = _batch()
  params = _params(model, batch)["params"]
  enc = batch["encoder_input_tokens"]
  encoded = module.apply({"params": params}, enc, enable_dropout=False,
                         method=module.encode)
  kv = model._cross_attention_kv(params, encoded, enc)  # pylint: disable=protected-access
  # One structure on every host, kernels or not: the tied output layer's
  # table transposed sits beside the layers' keys and values.
  with kernels.disabled():
    no_kernels = model._cross_attention_kv(params, encoded, enc)  # pylint: disable=protected-access
  assert (jax.tree_util.tree_structure(kv) ==
          jax.tree_util.tree_structure(no_kernels))
  assert sorted(kv) == ["decoder", attention.OUTPUT_KERNEL]
  assert sorted(kv["decoder"]) == ["layers_0", "layers_1"]
  layer = kv["decoder"]["layers_0"]["encoder_decoder_attention"]
  assert layer["key"].shape == layer["value"].shape == (2, 4, 10, 8)
  np.testing.assert_array_equal(kv[attention.OUTPUT_KERNEL],
                                params["token_embedder"]["embedding"].T)
  untied = network.Transformer(network.T5Config(
      **dict(SHAPE, logits_via_embedding=False)))
  model = models.EncoderDecoderModel(untied, None, None, None)
  params = _params(model, batch)["params"]
  kv = model._cross_attention_kv(params, encoded, enc)  # pylint: disable=protected-access
  assert sorted(kv) == ["decoder"]


def test_t5x_network_falls_back_to_t5x_decoding():
  module = t5x_network.Transformer(t5x_network.T5Config(**SHAPE))
  batch = _batch()
  params = _params(t5x_models.EncoderDecoderModel(module, None, None, None),
                   batch)["params"]
  decode_fn, num_decodes = DECODE_FNS["greedy"]
  theirs = _predict(t5x_models.EncoderDecoderModel, module, decode_fn,
                    num_decodes, params, batch)
  ours = _predict(models.EncoderDecoderModel, module, decode_fn, num_decodes,
                  params, batch)
  np.testing.assert_array_equal(ours[0], theirs[0])


def test_grouped_attention_equals_expanded_attention():
  """One key/value set per input == t5x's attention over beam copies."""
  rng = np.random.RandomState(1)
  query = rng.randn(6, 1, 4, 8).astype(np.float32)  # 2 inputs x 3 beams
  key, value = rng.randn(2, 2, 10, 4, 8).astype(np.float32)
  bias = np.where(rng.rand(2, 1, 1, 10) > 0.3, 0.0, -1e10).astype(np.float32)
  expand = lambda x: decoding.flat_batch_beam_expand(x, 3)
  expected = layers.dot_product_attention(
      query, expand(key), expand(value), bias=expand(bias),
      deterministic=True, float32_logits=True)
  got = attention.cached_attention(
      query, key.transpose(0, 2, 1, 3), value.transpose(0, 2, 1, 3), bias,
      dtype=np.float32, float32_logits=True)
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def _train_batch(batch_size=3, inputs=10, targets=12):
  rng = np.random.RandomState(2)
  enc = rng.randint(2, VOCAB, (batch_size, inputs)).astype(np.int32)
  tgt = rng.randint(2, VOCAB, (batch_size, targets)).astype(np.int32)
  enc[1, 6:] = 0
  tgt[1, 7:] = 0  # Padding: zero loss weights.
  tgt[2, 9:] = 0
  dec_in = np.concatenate([np.zeros((batch_size, 1), np.int32), tgt[:, :-1]],
                          axis=1)
  return {"encoder_input_tokens": enc, "decoder_input_tokens": dec_in,
          "decoder_target_tokens": tgt,
          "decoder_loss_weights": (tgt > 0).astype(np.float32)}


def _loss_and_grads(model_cls, module, params, batch, dropout, **kwargs):
  model = model_cls(module, None, None, None, **kwargs)
  rng = jax.random.PRNGKey(5) if dropout else None
  grad_fn = jax.value_and_grad(
      lambda p: model.loss_fn(p, batch, rng), has_aux=True)
  (loss, metrics), grads = jax.jit(grad_fn)(params)
  metrics = {k: np.asarray(v.compute()) for k, v in metrics.items()
             if not k.startswith("timing/")}
  return float(loss), metrics, grads


@pytest.mark.parametrize("tied,dropout,kwargs", [
    (True, False, dict(z_loss=1e-4)),
    (True, True, dict(z_loss=1e-2)),
    (False, False, dict(z_loss=1e-3,
                        loss_normalizing_factor="NUM_REAL_TARGET_TOKENS")),
    (True, False, dict(loss_normalizing_factor=7.0)),
])
def test_fused_loss_equals_t5x_loss_and_gradients(tied, dropout, kwargs):
  """Loss, z-loss, every metric and every gradient as t5x's loss_fn."""
  shape = dict(SHAPE, logits_via_embedding=tied,
               dropout_rate=0.1 if dropout else 0.0)
  module = network.Transformer(network.T5Config(**shape))
  batch = _train_batch()
  params = _params(t5x_models.EncoderDecoderModel(module, None, None, None),
                   batch)["params"]
  theirs = _loss_and_grads(t5x_models.EncoderDecoderModel, module, params,
                           batch, dropout, **kwargs)
  ours = _loss_and_grads(models.EncoderDecoderModel, module, params, batch,
                         dropout, **kwargs)
  np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
  assert ours[1].keys() == theirs[1].keys()
  for name in theirs[1]:
    np.testing.assert_allclose(ours[1][name], theirs[1][name], rtol=1e-5,
                               atol=1e-6, err_msg=name)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
      ours[2], theirs[2])


def test_fused_cross_entropy_chunks_and_padding_rows():
  """Chunks that do not divide the rows: same sums and gradients."""
  rng = np.random.RandomState(3)
  hidden = rng.randn(10, 8).astype(np.float32)
  kernel = rng.randn(VOCAB, 8).astype(np.float32)
  targets = rng.randint(0, VOCAB, 10).astype(np.int32)
  weights = (rng.rand(10) > 0.2).astype(np.float32)

  def reference(h, k):
    logits = h @ k.T / 2.0
    loss, z, _ = losses.compute_weighted_cross_entropy(
        logits, targets, weights, z_loss=1e-3)
    return loss, z

  def fused(h, k, rows):
    loss, z, _ = models.fused_cross_entropy(h, k, targets, weights, 0, 2.0,
                                            1e-3, rows)
    return loss, z

  expected = reference(hidden, kernel)
  expected_grads = jax.grad(lambda h, k: reference(h, k)[0],
                            argnums=(0, 1))(hidden, kernel)
  for rows in (1, 3, 4, 16):
    np.testing.assert_allclose(fused(hidden, kernel, rows), expected,
                               rtol=1e-5)
    grads = jax.grad(lambda h, k: fused(h, k, rows)[0],  # pylint: disable=cell-var-from-loop
                     argnums=(0, 1))(hidden, kernel)
    for got, want in zip(grads, expected_grads):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_label_smoothing_falls_back_to_t5x_loss():
  module = network.Transformer(network.T5Config(**SHAPE))
  batch = _train_batch()
  params = _params(t5x_models.EncoderDecoderModel(module, None, None, None),
                   batch)["params"]
  ours = _loss_and_grads(models.EncoderDecoderModel, module, params, batch,
                         False, label_smoothing=0.1)
  theirs = _loss_and_grads(t5x_models.EncoderDecoderModel, module, params,
                           batch, False, label_smoothing=0.1)
  assert ours[0] == theirs[0]


@pytest.mark.parametrize("activations,dropout", [(("relu",), True),
                                                 (("gelu", "linear"), False)])
def test_network_trains_as_t5x_network(activations, dropout):
  """pad-jax's network: t5x's parameter tree, loss and gradients (dropout too)."""
  shape = dict(SHAPE, mlp_activations=activations,
               dropout_rate=0.1 if dropout else 0.0)
  ours = network.Transformer(network.T5Config(**shape))
  theirs = t5x_network.Transformer(t5x_network.T5Config(**shape))
  batch = _train_batch()
  params = _params(t5x_models.EncoderDecoderModel(theirs, None, None, None),
                   batch)["params"]
  assert (jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
      _params(t5x_models.EncoderDecoderModel(ours, None, None, None),
              batch)["params"]))
  got = _loss_and_grads(t5x_models.EncoderDecoderModel, ours, params, batch,
                        dropout, z_loss=1e-4)
  want = _loss_and_grads(t5x_models.EncoderDecoderModel, theirs, params, batch,
                         dropout, z_loss=1e-4)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
      got[2], want[2])
