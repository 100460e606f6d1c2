"""gin_configs/models: shapes match the released CodeT5 / T5.1.1 models.

Only shapes are built (`jax.eval_shape`, torch's meta device), so even
CodeT5-large costs no memory.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pad_jax.student import hf_import as convert_hf
from pad_jax.student import models as pad_models
from pad_jax.student import network as pad_network
from pad_jax.student import vocab as vocab_lib
from pad_jax.student import model_gin

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# Salesforce/codet5-{small,base,large} config.json fields and parameter
# counts as published on the Hugging Face hub.
CODET5 = {
    "codet5_small": (dict(d_model=512, d_ff=2048, num_heads=8, num_layers=6),
                     60_492_288),
    "codet5_base": (dict(d_model=768, d_ff=3072, num_heads=12, num_layers=12),
                    222_882_048),
    "codet5_large": (dict(d_model=1024, d_ff=4096, num_heads=16,
                          num_layers=24), 737_639_424),
}
SHAPES = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
TYPES = {k: jnp.int32 for k in SHAPES}


def _param_shapes(gin_file):
  model = model_gin.load_model_from_gin([gin_file])
  variables = jax.eval_shape(
      lambda: model.get_initial_variables(jax.random.PRNGKey(0), SHAPES, TYPES))
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables["params"]))
  return model, {k: tuple(v.shape) for k, v in flat.items()}


def _hf_shapes_as_t5x(hf_config):
  """HF model built on the meta device, mapped by the converter (shapes)."""
  with torch.device("meta"):
    model = transformers.T5ForConditionalGeneration(
        transformers.T5Config(**hf_config))
  state = {k: np.broadcast_to(np.float32(0), tuple(v.shape))
           for k, v in model.state_dict().items()}
  params = convert_hf.convert_params(hf_config, state)
  flat = flax.traverse_util.flatten_dict(params)
  return {k: tuple(v.shape) for k, v in flat.items()}


@pytest.mark.parametrize("name", sorted(CODET5))
def test_codet5_configs_match_released_models(name):
  dims, count = CODET5[name]
  model, shapes = _param_shapes(f"gin_configs/models/{name}.gin")
  assert sum(int(np.prod(s)) for s in shapes.values()) == count
  hf_config = dict(model_type="t5", vocab_size=32100, d_kv=64,
                   feed_forward_proj="relu", **dims)
  assert _hf_shapes_as_t5x(hf_config) == shapes
  assert isinstance(model.module, pad_network.Transformer)
  assert isinstance(model, pad_models.EncoderDecoderModel)
  cfg = model.module.config
  assert cfg.logits_via_embedding and tuple(cfg.mlp_activations) == ("relu",)
  assert not cfg.one_hot_embedding
  vocabulary = model.output_vocabulary
  assert isinstance(vocabulary, vocab_lib.CodeT5Vocabulary)
  assert vocabulary.vocab_size == cfg.vocab_size == 32100
  assert model.input_vocabulary == vocabulary


def test_tiny_uses_the_pad_model_class():
  model = model_gin.load_model_from_gin(["gin_configs/models/tiny.gin"])
  assert isinstance(model, pad_models.EncoderDecoderModel)


def test_t5_1_1_small_is_gated_gelu_untied():
  model, shapes = _param_shapes("gin_configs/models/t5_1_1_small.gin")
  assert isinstance(model, pad_models.EncoderDecoderModel)
  cfg = model.module.config
  assert tuple(cfg.mlp_activations) == ("gelu", "linear")
  assert not cfg.logits_via_embedding
  assert shapes[("decoder", "logits_dense", "kernel")] == (512, 32100)
  assert shapes[("encoder", "layers_7", "mlp", "wi_1", "kernel")] == (512, 1024)
  # google/t5-v1_1-small's shapes (with this vocabulary): a transformers-4
  # style config (untied lm_head) maps onto exactly this parameter tree.
  hf_config = dict(model_type="t5", vocab_size=32100, d_model=512, d_kv=64,
                   d_ff=1024, num_heads=6, num_layers=8,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False)
  assert _hf_shapes_as_t5x(hf_config) == shapes


def test_network_parameter_tree_equals_t5x_example_network():
  """Checkpoints are interchangeable with t5x.examples.t5.network."""
  from t5x.examples.t5 import network as t5x_network  # pylint: disable=import-outside-toplevel
  kwargs = dict(vocab_size=32100, emb_dim=512, num_heads=8,
                num_encoder_layers=6, num_decoder_layers=6, head_dim=64,
                mlp_dim=2048, logits_via_embedding=True)
  args = (jnp.ones((1, 8), jnp.int32),) * 3
  ours = jax.eval_shape(
      lambda: pad_network.Transformer(pad_network.T5Config(**kwargs)).init(
          jax.random.PRNGKey(0), *args, enable_dropout=False))
  theirs = jax.eval_shape(
      lambda: t5x_network.Transformer(t5x_network.T5Config(**kwargs)).init(
          jax.random.PRNGKey(0), *args, enable_dropout=False))
  assert (jax.tree.map(lambda x: x.shape, ours["params"]) ==
          jax.tree.map(lambda x: x.shape, theirs["params"]))
  assert ours["params_axes"] == theirs["params_axes"]
