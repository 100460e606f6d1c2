"""Hugging Face Llama / Qwen2 -> t5x import: parity on random-weight models.

Models are built with transformers (torch, CPU, fp32) from tiny configs and
saved with `save_pretrained`; `convert_any` (what `python -m
pad_jax.convert_hf` runs) imports them. The converted network's logits
equal HF's, and t5x's own `DecoderOnlyModel.predict_batch` (prefill of the
prompt, then one token per step) decodes HF's greedy ids.
"""

import functools
import json
import os
import shutil
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio
from t5x import decoding
from t5x import models
from t5x import partitioning
from t5x import utils

from pad_jax.student import decoder_network
from pad_jax.student import hf_import
from pad_jax.student import hf_import_decoder
from pad_jax.student import model_gin
from hf_tokenizer_vocab_test import make_tokenizer_dir

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 128
ATOL = 1e-4
# No token is EOS (an id outside the vocabulary): both decoders run to the
# full length, so every generated id is compared.
NO_EOS = VOCAB
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96,
              num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
              # Larger than HF's 0.02: greedy outputs of a tied model do not
              # collapse to one repeated token.
              initializer_range=0.25, bos_token_id=0, eos_token_id=NO_EOS,
              pad_token_id=0)


def _hf_model(tmp_path, name, config_cls, max_shard_size=None, **overrides):
  """A random `AutoModelForCausalLM` (fp32) saved to `tmp_path/name`.

  Biases (HF initializes them to zero) are random too, so that a bias
  mapped to the wrong projection shows.
  """
  torch.manual_seed(0)
  config = config_cls(**{**COMMON, **overrides})
  model = transformers.AutoModelForCausalLM.from_config(
      config, dtype=torch.float32).eval()
  with torch.no_grad():
    for name, value in model.named_parameters():
      if name.endswith(".bias"):
        value.normal_(0.0, 0.5)
  path = tmp_path / name
  kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
  model.save_pretrained(str(path), **kwargs)
  return model, str(path)


def _converted(hf_dir, out_dir):
  """(params, DecoderConfig fields) of `convert_any`'s checkpoint.

  In the tokenizer's ids when `hf_dir` has one, as the model.gin's.
  """
  ckpt = hf_import_decoder.convert_any(hf_dir, out_dir)
  assert ckpt == os.path.join(out_dir, "checkpoint_0")
  config = hf_import.read_hf_config(hf_dir)
  cfg = hf_import_decoder.network_config(config)
  params = hf_import_decoder.convert_params(
      config, hf_import.read_hf_weights(hf_dir),
      hf_import_decoder.tokenizer_vocabulary(hf_dir))
  cfg["vocab_size"] = params["token_embedder"]["embedding"].shape[0]
  return params, cfg


def _check_logits(hf_model, params, cfg, length=48, vocabulary=None,
                  hf_rows=VOCAB):
  """Logits equal HF's; with `vocabulary`, in its ids and row order."""
  ids = np.random.RandomState(0).randint(1, hf_rows, size=(2, length))
  with torch.no_grad():
    want = hf_model(input_ids=torch.tensor(ids)).logits.numpy()
  if vocabulary is not None:
    ids = np.asarray([vocabulary.from_hf_ids(row) for row in ids])
  module = decoder_network.DecoderOnlyTransformer(
      decoder_network.DecoderConfig(**cfg))
  ids = jnp.asarray(ids)
  got = np.asarray(module.apply({"params": params}, ids, jnp.ones_like(ids),
                                enable_dropout=False))
  if vocabulary is not None:  # seqio columns -> HF columns; then HF's rows.
    got = got[..., vocabulary.row_permutation(cfg["vocab_size"])]
    np.testing.assert_array_equal(got[..., hf_rows:], 0.0)  # Zero pad rows.
    got = got[..., :hf_rows]
  np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
  assert np.abs(want).max() > 1.0  # Not a trivially small model.


def _check_greedy(hf_model, params, cfg, prompts=None, length=32,
                  vocabulary=None):
  """predict_batch (prompts of different lengths in one batch) = generate.

  `prompts` are HF ids; with `vocabulary`, ours decodes its ids (mapped back
  with `to_hf_ids`) and HF starts from the HF id of seqio's start id 0.
  """
  to_hf = vocabulary.to_hf_ids if vocabulary else list
  from_hf = vocabulary.from_hf_ids if vocabulary else list
  if prompts is None:
    rng = np.random.RandomState(1)
    prompts = [rng.randint(2, VOCAB, size=n) for n in (5, 11)]
  no_eos = cfg["vocab_size"]  # Outside HF's ids and ours: never generated.
  # DecoderFeatureConverter's layout: BOS 0, the prompt, then the targets;
  # decoder_causal_attention marks BOS + prompt.
  tokens = np.zeros((len(prompts), length), np.int32)
  causal = np.zeros_like(tokens)
  for row, prompt in enumerate(prompts):
    tokens[row, 1:len(prompt) + 1] = from_hf(prompt)
    causal[row, :len(prompt) + 1] = 1
  module = decoder_network.DecoderOnlyTransformer(
      decoder_network.DecoderConfig(**cfg))
  model = models.DecoderOnlyModel(
      module, seqio.PassThroughVocabulary(no_eos, eos_id=no_eos), None,
      decode_fn=functools.partial(decoding.temperature_sample,
                                  temperature=0.0))
  ours = np.asarray(model.predict_batch(
      params, {"decoder_input_tokens": jnp.asarray(tokens),
               "decoder_causal_attention": jnp.asarray(causal)}))
  for row, prompt in enumerate(prompts):
    hf_input = torch.tensor([to_hf([0]) + list(prompt)])
    steps = length - len(prompt) - 1  # t5x fills the rest of the row.
    with torch.no_grad():
      hf = hf_model.generate(
          input_ids=hf_input, attention_mask=torch.ones_like(hf_input),
          max_new_tokens=steps, do_sample=False, num_beams=1,
          eos_token_id=no_eos, pad_token_id=0).numpy()[0, len(prompt) + 1:]
    assert len(hf) == steps
    np.testing.assert_array_equal(to_hf(ours[row, :steps]), hf)
    assert len(set(hf.tolist())) > 2  # Not a degenerate constant output.


def test_llama_untied_gqa_parity_and_greedy(tmp_path):
  hf_model, hf_dir = _hf_model(tmp_path, "llama", transformers.LlamaConfig,
                               rope_theta=500.0, rms_norm_eps=1e-5)
  params, cfg = _converted(hf_dir, str(tmp_path / "ckpt"))
  assert not cfg["tie_word_embeddings"] and "logits_dense" in params
  assert cfg["num_kv_heads"] < cfg["num_heads"]
  assert not cfg["qkv_bias"] and not cfg["out_bias"]
  _check_logits(hf_model, params, cfg)
  _check_greedy(hf_model, params, cfg)


def test_qwen2_tied_qkv_bias_sharded_parity_and_greedy(tmp_path):
  hf_model, hf_dir = _hf_model(tmp_path, "qwen2", transformers.Qwen2Config,
                               max_shard_size="60KB",
                               tie_word_embeddings=True, rms_norm_eps=1e-6)
  index = json.load(open(os.path.join(hf_dir, "model.safetensors.index.json")))
  assert len(set(index["weight_map"].values())) > 1  # Really sharded.
  assert not os.path.exists(os.path.join(hf_dir, "model.safetensors"))
  params, cfg = _converted(hf_dir, str(tmp_path / "ckpt"))
  assert cfg["tie_word_embeddings"] and "logits_dense" not in params
  assert cfg["qkv_bias"] and not cfg["out_bias"]
  assert "bias" in params["layers_0"]["self_attention"]["query"]
  assert "bias" not in params["layers_0"]["self_attention"]["out"]
  _check_logits(hf_model, params, cfg)
  _check_greedy(hf_model, params, cfg)


@pytest.mark.parametrize("rope", [
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
     "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    {"rope_type": "linear", "factor": 4.0},
], ids=["llama3", "linear"])
def test_rope_scaling_parity(tmp_path, rope):
  """Scaled rotary frequencies; also Llama's attention_bias, tied."""
  hf_model, hf_dir = _hf_model(
      tmp_path, "scaled", transformers.LlamaConfig,
      rope_parameters={"rope_theta": 10000.0, **rope},
      attention_bias=True, tie_word_embeddings=True)
  config = hf_import.read_hf_config(hf_dir)
  cfg = hf_import_decoder.network_config(config)
  assert cfg["rope_type"] == rope["rope_type"]
  assert cfg["qkv_bias"] and cfg["out_bias"]
  params = hf_import_decoder.convert_params(
      config, hf_import.read_hf_weights(hf_dir))
  _check_logits(hf_model, params, cfg, length=200)  # Past 64: scaled.


def _with_tokenizer(tmp_path, flavour, hf_rows, config_cls, **overrides):
  """A random HF model with `flavour`'s tokenizer files beside its weights.

  Returns:
    (HF model, its directory, AutoTokenizer, the model.gin vocabulary).
  """
  tok_dir = make_tokenizer_dir(tmp_path / f"tok_{flavour}", flavour)
  hf_tok = transformers.AutoTokenizer.from_pretrained(str(tok_dir))
  hf_model, hf_dir = _hf_model(
      tmp_path, flavour, config_cls, vocab_size=hf_rows or len(hf_tok),
      bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
      pad_token_id=hf_tok.pad_token_id, **overrides)
  for name in os.listdir(tok_dir):
    shutil.copy(tok_dir / name, os.path.join(hf_dir, name))
  return hf_model, hf_dir, hf_tok, hf_import_decoder.tokenizer_vocabulary(hf_dir)


def test_tokenizer_rows_follow_the_vocabulary(tmp_path):
  """seqio id 0 <-> the BOS row: text prompts decode HF's greedy ids."""
  hf_model, hf_dir, hf_tok, vocab = _with_tokenizer(
      tmp_path, "smollm_instruct", 384, transformers.LlamaConfig)
  assert vocab.pad_hf_id == hf_tok.bos_token_id != 0  # A real swap.
  out_dir = str(tmp_path / "ckpt")
  params, cfg = _converted(hf_dir, out_dir)
  assert params["token_embedder"]["embedding"].shape[0] == 384  # Spare rows.
  state = hf_import.read_hf_weights(hf_dir)
  emb = state["model.embed_tokens.weight"]
  np.testing.assert_array_equal(params["token_embedder"]["embedding"][0],
                                emb[vocab.pad_hf_id])
  np.testing.assert_array_equal(params["logits_dense"]["kernel"][:, 0],
                                state["lm_head.weight"][vocab.pad_hf_id])
  # convert_any wrote these very parameters (read back with t5x).
  gin_text = open(os.path.join(out_dir, "model.gin")).read()
  assert "vocab_size = 384" in gin_text and "HFTokenizerVocabulary" in gin_text
  _check_logits(hf_model, params, cfg, vocabulary=vocab, hf_rows=384)
  texts = ("How many apples does Tom have?",
           "def solution():\n    return 12 + 35\n")
  prompts = [hf_tok(t, add_special_tokens=False).input_ids for t in texts]
  assert [vocab.encode(t) for t in texts] == [vocab.from_hf_ids(p)
                                              for p in prompts]
  _check_greedy(hf_model, params, cfg, prompts=prompts, length=40,
                vocabulary=vocab)


def test_tokenizer_new_pad_id_pads_the_rows(tmp_path):
  """No spare row for a new seqio pad id: rows grow to a multiple of 128."""
  hf_model, hf_dir, hf_tok, vocab = _with_tokenizer(
      tmp_path, "qwen_base", None, transformers.Qwen2Config,
      tie_word_embeddings=True)
  size = len(hf_tok)
  assert hf_model.config.vocab_size == size == vocab.pad_hf_id  # New id.
  params, cfg = _converted(hf_dir, str(tmp_path / "ckpt"))
  rows = hf_import_decoder.ROW_MULTIPLE * -(-(size + 1) //
                                            hf_import_decoder.ROW_MULTIPLE)
  assert cfg["vocab_size"] == rows
  embedding = params["token_embedder"]["embedding"]
  assert embedding.shape[0] == rows
  np.testing.assert_array_equal(embedding[0], 0.0)  # The new pad row.
  np.testing.assert_array_equal(
      embedding[size],
      hf_import.read_hf_weights(hf_dir)["model.embed_tokens.weight"][0])
  text = open(str(tmp_path / "ckpt" / "model.gin")).read()
  assert f"vocab_size = {rows}" in text
  _check_logits(hf_model, params, cfg, vocabulary=vocab, hf_rows=size)


def test_transformers4_config_fields():
  """config.json written by transformers 4: rope_theta + rope_scaling."""
  config = dict(model_type="llama", vocab_size=10, hidden_size=8,
                num_attention_heads=2, num_hidden_layers=1,
                intermediate_size=16, rope_theta=100000.0,
                rope_scaling={"type": "linear", "factor": 2.0},
                tie_word_embeddings=True)
  cfg = hf_import_decoder.network_config(config)
  assert cfg["rope_theta"] == 100000.0 and cfg["rope_type"] == "linear"
  assert cfg["rope_factor"] == 2.0 and cfg["num_kv_heads"] == 2
  assert cfg["head_dim"] == 4 and cfg["tie_word_embeddings"]


def test_checkpoint_restores_with_t5x_and_model_gin_parses(tmp_path):
  _, hf_dir = _hf_model(tmp_path, "llama", transformers.LlamaConfig)
  out_dir = str(tmp_path / "ckpt")
  params, cfg = _converted(hf_dir, out_dir)
  wrapper = tmp_path / "with_vocab.gin"
  wrapper.write_text(
      "from __gin__ import dynamic_registration\n"
      "import seqio\n"
      f"include '{os.path.join(out_dir, 'model.gin')}'\n"
      "VOCABULARY = @seqio.PassThroughVocabulary()\n"
      f"seqio.PassThroughVocabulary.size = {VOCAB}\n")
  model = model_gin.load_model_from_gin([str(wrapper)])
  assert isinstance(model, models.DecoderOnlyModel)
  assert model.module.config.replace(dtype="float32") == (
      decoder_network.DecoderConfig(**cfg, dtype="float32"))
  partitioner = partitioning.PjitPartitioner(num_partitions=1)
  initializer = utils.TrainStateInitializer(
      optimizer_def=model.optimizer_def, init_fn=model.get_initial_variables,
      input_shapes={"decoder_input_tokens": (1, 8)}, partitioner=partitioner)
  ckpt = os.path.join(out_dir, "checkpoint_0")
  restore = utils.RestoreCheckpointConfig(
      path=ckpt, mode="specific", strict=False, fallback_to_scratch=True,
      assignment_map=hf_import.FRESH_OPTIMIZER_ASSIGNMENT_MAP)
  state, _ = utils.create_checkpoint_manager_and_restore(
      initializer, partitioner, restore, ckpt, jax.random.PRNGKey(0),
      use_orbax=True)
  restored = flax.traverse_util.flatten_dict(flax.core.unfreeze(state.params))
  want = flax.traverse_util.flatten_dict(params)
  assert set(restored) == set(want)
  for key, value in want.items():
    np.testing.assert_array_equal(np.asarray(restored[key]), value)


def test_model_gin_uses_the_checkpoints_tokenizer(tmp_path):
  (tmp_path / "tokenizer.json").write_text("{}")
  text = hf_import_decoder.model_gin_text({"vocab_size": 8}, str(tmp_path),
                                          "llama")
  assert "VOCABULARY = @hf_tokenizer_vocab.HFTokenizerVocabulary()" in text
  assert repr(str(tmp_path / "tokenizer.json")) in text
  text = hf_import_decoder.model_gin_text({"vocab_size": 8},
                                          str(tmp_path / "none"), "llama")
  assert "hf_tokenizer_vocab" not in text and "VOCABULARY: required" in text


def test_unsupported_configs_fail_clearly():
  base = dict(model_type="llama", vocab_size=10, hidden_size=8,
              num_attention_heads=2, num_hidden_layers=1,
              intermediate_size=16)
  cases = {
      "rope_parameters": {"rope_parameters": {"rope_type": "yarn",
                                              "factor": 4.0}},
      "rope_scaling": {"rope_scaling": {"rope_type": "dynamic",
                                        "factor": 2.0}},
      "hidden_act": {"hidden_act": "gelu"},
      "mlp_bias": {"mlp_bias": True},
      "use_sliding_window": {"model_type": "qwen2",
                             "use_sliding_window": True},
      "sliding_window": {"model_type": "mistral", "sliding_window": 4096,
                         "max_position_embeddings": 32768},
      "intermediate_size": {"intermediate_size": None},
  }
  for field, overrides in cases.items():
    with pytest.raises(hf_import.ConversionError, match=f"field '{field}"):
      hf_import_decoder.network_config({**base, **overrides})
  # Mistral without a window (v0.2 and later) is Llama without biases.
  cfg = hf_import_decoder.network_config(
      {**base, "model_type": "mistral", "sliding_window": None})
  assert not cfg["qkv_bias"] and not cfg["out_bias"]


def test_unmapped_or_missing_tensors_fail(tmp_path):
  _, hf_dir = _hf_model(tmp_path, "llama", transformers.LlamaConfig)
  config = hf_import.read_hf_config(hf_dir)
  state = hf_import.read_hf_weights(hf_dir)
  state.pop("model.layers.1.mlp.down_proj.weight")
  with pytest.raises(hf_import.ConversionError, match="down_proj.weight' missing"):
    hf_import_decoder.convert_params(config, state)
  state = hf_import.read_hf_weights(hf_dir)
  state["extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(hf_import.ConversionError, match="extra.weight"):
    hf_import_decoder.convert_params(config, state)


def test_unknown_model_type_is_a_one_line_error(tmp_path):
  bad = tmp_path / "bad"
  bad.mkdir()
  (bad / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
  with pytest.raises(hf_import.ConversionError,
                     match="field 'model_type': 'gpt2' unsupported"):
    hf_import_decoder.convert_any(str(bad), str(tmp_path / "never"))
  proc = subprocess.run(
      [sys.executable, "-m", "pad_jax.convert_hf", f"--hf_dir={bad}",
       f"--out_dir={tmp_path / 'never'}"],
      capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f"error: {bad / 'config.json'}: field 'model_type': 'gpt2' unsupported")
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "never").exists()
