"""Decoder-only t5x -> Hugging Face export (`hf_export_decoder`, `hf_export`).

Random-weight tiny HF models with a tokenizer (`hf_tokenizer_vocab_test`'s)
are imported with `convert_any`, exported with `hf_export.export`, and
imported again: the parameters are bit-identical, the exported tensors are
the original's, and transformers loads the export (model and tokenizer) and
greedy-decodes the original's ids. Llama untied, whose seqio pad is its BOS;
Qwen2 tied with q/k/v biases, whose seqio pad is a new id (rows padded on
import, dropped on export while untrained, kept once trained).
"""

import json
import os
import shutil
import types

import flax
import numpy as np
import pytest

from hf_tokenizer_vocab_test import make_tokenizer_dir
from pad_jax.student import decoder_network
from pad_jax.student import hf_export
from pad_jax.student import hf_export_decoder
from pad_jax.student import hf_import
from pad_jax.student import hf_import_decoder

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXTS = ("How many apples does Tom have?", "def solution():\n    return 12\n")
COMMON = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, head_dim=8,
              max_position_embeddings=128, initializer_range=0.25)


def _hf_dir(tmp_path, flavour, config_cls, hf_rows=None, **overrides):
  """A random HF causal LM with `flavour`'s tokenizer files; (model, dir)."""
  tok_dir = make_tokenizer_dir(tmp_path / f"tok_{flavour}", flavour)
  tok = transformers.AutoTokenizer.from_pretrained(str(tok_dir))
  torch.manual_seed(0)
  config = config_cls(**COMMON, vocab_size=hf_rows or len(tok),
                      bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, **overrides)
  model = transformers.AutoModelForCausalLM.from_config(
      config, dtype=torch.float32).eval()
  with torch.no_grad():
    for name, value in model.named_parameters():
      if name.endswith(".bias"):
        value.normal_(0.0, 0.5)
  path = tmp_path / flavour
  model.save_pretrained(str(path))
  for name in os.listdir(tok_dir):
    shutil.copy(tok_dir / name, path / name)
  return model, str(path)


def _imported(hf_dir):
  config = hf_import.read_hf_config(hf_dir)
  vocab = hf_import_decoder.tokenizer_vocabulary(hf_dir)
  params = hf_import_decoder.convert_params(
      config, hf_import.read_hf_weights(hf_dir), vocab)
  return flax.traverse_util.flatten_dict(params), vocab


def _greedy(model_dir, model=None):
  tok = transformers.AutoTokenizer.from_pretrained(model_dir)
  model = model or transformers.AutoModelForCausalLM.from_pretrained(
      model_dir, dtype=torch.float32).eval()
  out = []
  for text in TEXTS:
    ids = tok(text, add_special_tokens=False).input_ids
    if tok.bos_token_id is not None:
      ids = [tok.bos_token_id] + ids
    ids = torch.tensor([ids])
    with torch.no_grad():
      out.append(model.generate(
          input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
          num_beams=1, max_new_tokens=12, eos_token_id=None,
          pad_token_id=0).numpy()[0].tolist())
  return out


def _round_trip(tmp_path, hf_model, hf_dir):
  """import -> export -> import; returns the exported directory."""
  ckpt_dir = str(tmp_path / "ckpt")
  checkpoint = hf_import_decoder.convert_any(hf_dir, ckpt_dir)
  out = str(tmp_path / "exported")
  summary = hf_export.export(checkpoint, [os.path.join(ckpt_dir, "model.gin")],
                             out)
  assert "tokenizer.json" in summary["files"]
  first, _ = _imported(hf_dir)
  again, _ = _imported(out)
  assert set(first) == set(again)
  for key, value in first.items():
    np.testing.assert_array_equal(again[key], value, err_msg="/".join(key))
  # The export is the original model: same tensors, same greedy ids.
  want = hf_import.read_hf_weights(hf_dir)
  got = hf_import.read_hf_weights(out)
  if hf_model.config.tie_word_embeddings:  # save_pretrained may write it.
    want.pop("lm_head.weight", None)
  assert set(got) == set(want)
  for name, value in want.items():
    np.testing.assert_array_equal(got[name], value, err_msg=name)
  assert _greedy(out) == _greedy(hf_dir, hf_model)
  return out


def test_llama_untied_export_round_trip(tmp_path):
  hf_model, hf_dir = _hf_dir(tmp_path, "smollm_instruct",
                             transformers.LlamaConfig, hf_rows=384)
  out = _round_trip(tmp_path, hf_model, hf_dir)
  config = json.load(open(os.path.join(out, "config.json")))
  assert config["architectures"] == ["LlamaForCausalLM"]
  assert config["vocab_size"] == 384 and not config["tie_word_embeddings"]
  tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
  assert (config["bos_token_id"], config["eos_token_id"]) == (
      tok.bos_token_id, tok.eos_token_id)
  generation = json.load(open(os.path.join(out, "generation_config.json")))
  assert generation["eos_token_id"] == tok.eos_token_id


def test_qwen2_tied_bias_new_pad_id_round_trip(tmp_path):
  hf_model, hf_dir = _hf_dir(tmp_path, "qwen_base", transformers.Qwen2Config,
                             tie_word_embeddings=True)
  size = hf_model.config.vocab_size
  out = _round_trip(tmp_path, hf_model, hf_dir)
  rows = hf_import_decoder.ROW_MULTIPLE * (size // 128 + 1)
  gin_text = open(tmp_path / "ckpt" / "model.gin").read()
  assert f"vocab_size = {rows}" in gin_text  # Padded on import, for the new
  config = json.load(open(os.path.join(out, "config.json")))
  assert config["architectures"] == ["Qwen2ForCausalLM"]
  assert config["vocab_size"] == size  # pad id; dropped again on export.
  assert config["tie_word_embeddings"]


def test_trained_pad_row_is_kept(tmp_path):
  """Once the new pad row (the decoder's start token) has trained, the
  export keeps every row, and still imports back bit-identically."""
  hf_model, hf_dir = _hf_dir(tmp_path, "qwen_base", transformers.Qwen2Config,
                             tie_word_embeddings=True)
  size = hf_model.config.vocab_size
  flat, vocab = _imported(hf_dir)
  flat[("token_embedder", "embedding")][0] = 0.5  # "Trained".
  params = flax.traverse_util.unflatten_dict(flat)
  cfg = hf_import_decoder.network_config(hf_import.read_hf_config(hf_dir))
  cfg["vocab_size"] = flat[("token_embedder", "embedding")].shape[0]
  cfg = decoder_network.DecoderConfig(**cfg)
  hf = hf_export.export_decoder(cfg, params, vocab)
  assert hf.config["vocab_size"] == cfg.vocab_size > size
  np.testing.assert_array_equal(
      hf.tensors["model.embed_tokens.weight"][vocab.pad_hf_id], 0.5)
  hf_export._check_round_trip(hf_export.DECODER_FAMILY, hf, params, vocab)  # pylint: disable=protected-access


def test_out_bias_without_qkv_bias_is_refused():
  cfg = types.SimpleNamespace(qkv_bias=False, out_bias=True)
  with pytest.raises(hf_import.ConversionError, match="field 'out_bias'"):
    hf_export_decoder._architecture(cfg)  # pylint: disable=protected-access
