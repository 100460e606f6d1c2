"""Decoder-only students -> Hugging Face Llama / Qwen2 (`hf_export`'s family).

The inverse of `hf_import_decoder`: a `DecoderOnlyTransformer`'s config and
parameters become a `LlamaForCausalLM` or `Qwen2ForCausalLM` `config.json`
(Qwen2 when the query/key/value projections have biases and the output
projection has none; Llama otherwise, its `attention_bias` covering all
four) and its tensors; `hf_export` writes them and checks them by importing
them back (`import_params`).

Row order. The model's `HFTokenizerVocabulary` swapped seqio id 0 with one
HF id (`row_permutation`), so the embedding and the LM head go back to HF's
order. When that id is a new one (`pad_hf_id` == the tokenizer's size) and
the importer padded the rows for it (`hf_import_decoder.seqio_rows`), the
padding is dropped while it is still the importer's zeros: importing a
Hugging Face model and exporting it gives its tensors back. Once training
has changed the new row (it is the decoder's start token, so it does), all
rows are kept: HF id `pad_hf_id` stays a row without a token, and nothing
the model learned is lost.

Errors are `hf_import.ConversionError` (`hf_export` reports them as its
`ExportError`).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Mapping, Optional

import numpy as np

from pad_jax.student import hf_import_decoder
from pad_jax.student import hf_tokenizer_vocab
from pad_jax.student.hf_import import ConversionError

Vocabulary = hf_tokenizer_vocab.HFTokenizerVocabulary
# Copied from the vocabulary's directory when there (all text files).
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "added_tokens.json",
                   "chat_template.jinja")


def _require_vocabulary(vocabulary: Any) -> Vocabulary:
  if not isinstance(vocabulary, Vocabulary):
    raise ConversionError(
        f"vocabulary: {type(vocabulary).__name__}; a decoder-only export needs "
        "the model's HFTokenizerVocabulary (its tokenizer and id order)")
  return vocabulary


def _f32(x: Any) -> np.ndarray:
  return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


# ------------------------------------------------------------------------------
# Rows: seqio order -> Hugging Face order.
# ------------------------------------------------------------------------------
def _vocab_rows(cfg: Any, params: Mapping[str, Any]) -> list[np.ndarray]:
  """The [vocab, ...] arrays in seqio order: embedding (and LM head rows)."""
  rows = [np.asarray(params["token_embedder"]["embedding"])]
  if not cfg.tie_word_embeddings:
    rows.append(np.asarray(params["logits_dense"]["kernel"]).T)
  return rows


def hf_rows(cfg: Any, params: Mapping[str, Any], vocabulary: Vocabulary) -> int:
  """How many rows the Hugging Face embedding gets (see the module doc)."""
  size = hf_import_decoder.tokenizer_size(vocabulary)
  rows = int(cfg.vocab_size)
  if (vocabulary.pad_hf_id != size or
      hf_import_decoder.seqio_rows(size, vocabulary) != rows):
    return rows  # No rows were added for the new id.
  perm = vocabulary.row_permutation(rows)
  added = [r[perm][size:] for r in _vocab_rows(cfg, params)]
  return rows if any(np.any(a) for a in added) else size


def to_hf_order(rows: np.ndarray, vocabulary: Vocabulary,
                num_rows: int) -> np.ndarray:
  """seqio-ordered rows -> HF order, the first `num_rows` of them."""
  return _f32(rows[vocabulary.row_permutation(rows.shape[0])][:num_rows])


# ------------------------------------------------------------------------------
# config.json, tensors, generation_config.json.
# ------------------------------------------------------------------------------
def _architecture(cfg: Any) -> tuple[str, str]:
  """(architecture, model_type) for the network's biases."""
  if cfg.qkv_bias and not cfg.out_bias:
    return "Qwen2ForCausalLM", "qwen2"
  if cfg.qkv_bias == cfg.out_bias:
    return "LlamaForCausalLM", "llama"
  raise ConversionError("network config: field 'out_bias': an output bias "
                        "without query/key/value biases has no Hugging Face "
                        "Llama or Qwen2 equivalent")


def _rope_parameters(cfg: Any) -> dict[str, Any]:
  rope = {"rope_theta": float(cfg.rope_theta), "rope_type": cfg.rope_type}
  if cfg.rope_type in ("linear", "llama3"):
    rope["factor"] = float(cfg.rope_factor)
  if cfg.rope_type == "llama3":
    rope.update(low_freq_factor=float(cfg.rope_low_freq_factor),
                high_freq_factor=float(cfg.rope_high_freq_factor),
                original_max_position_embeddings=int(
                    cfg.rope_original_max_position))
  return rope


def hf_config(cfg: Any, vocabulary: Vocabulary, num_rows: int) -> dict[str, Any]:
  """The `config.json` of a `DecoderConfig` (special ids in HF ids).

  The rotary settings are written both ways: `rope_parameters`
  (transformers >= 5) and `rope_theta` + `rope_scaling` (transformers 4).
  """
  arch, model_type = _architecture(cfg)
  rope = _rope_parameters(cfg)
  config = {
      "architectures": [arch],
      "model_type": model_type,
      "vocab_size": int(num_rows),
      "hidden_size": int(cfg.emb_dim),
      "intermediate_size": int(cfg.mlp_dim),
      "num_hidden_layers": int(cfg.num_layers),
      "num_attention_heads": int(cfg.num_heads),
      "num_key_value_heads": int(cfg.num_kv_heads),
      "head_dim": int(cfg.head_dim),
      "hidden_act": "silu",
      "max_position_embeddings": int(cfg.max_position_embeddings),
      "rms_norm_eps": float(cfg.rms_norm_eps),
      "rope_parameters": rope,
      "rope_theta": rope["rope_theta"],
      "tie_word_embeddings": bool(cfg.tie_word_embeddings),
      "attention_dropout": 0.0,
      "use_cache": True,
      "bos_token_id": vocabulary.hf_bos_id,
      "eos_token_id": vocabulary.hf_eos_id,
      "pad_token_id": vocabulary.hf_pad_id,
      "torch_dtype": "float32",
  }
  if cfg.rope_type != "default":
    config["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
  if model_type == "llama":
    config.update(attention_bias=bool(cfg.qkv_bias), mlp_bias=False)
  else:
    config.update(use_sliding_window=False, sliding_window=None)
  return config


_ATTENTION = (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"),
              ("out", "o_proj"))
_MLP = (("wi_0", "gate_proj"), ("wi_1", "up_proj"), ("wo", "down_proj"))


def _dense(out: dict[str, np.ndarray], name: str, p: Mapping[str, Any]) -> None:
  out[f"{name}.weight"] = _f32(np.asarray(p["kernel"]).T)  # [in, out] -> HF
  if "bias" in p:
    out[f"{name}.bias"] = _f32(p["bias"])


def hf_tensors(cfg: Any, params: Mapping[str, Any], vocabulary: Vocabulary,
               num_rows: int) -> dict[str, np.ndarray]:
  """HF tensors of the parameter tree (`hf_import_decoder.convert_params`'s
  inverse); `lm_head.weight` only when untied."""
  rows = _vocab_rows(cfg, params)
  out = {"model.embed_tokens.weight": to_hf_order(rows[0], vocabulary,
                                                  num_rows)}
  for i in range(cfg.num_layers):
    layer, prefix = params[f"layers_{i}"], f"model.layers.{i}"
    out[f"{prefix}.input_layernorm.weight"] = _f32(
        layer["pre_self_attention_layer_norm"]["scale"])
    for ours, theirs in _ATTENTION:
      _dense(out, f"{prefix}.self_attn.{theirs}",
             layer["self_attention"][ours])
    out[f"{prefix}.post_attention_layernorm.weight"] = _f32(
        layer["pre_mlp_layer_norm"]["scale"])
    for ours, theirs in _MLP:
      _dense(out, f"{prefix}.mlp.{theirs}", layer["mlp"][ours])
  out["model.norm.weight"] = _f32(params["decoder_norm"]["scale"])
  if not cfg.tie_word_embeddings:
    out["lm_head.weight"] = to_hf_order(rows[1], vocabulary, num_rows)
  return out


def generation_config(vocabulary: Vocabulary) -> dict[str, Any]:
  """BOS / EOS / PAD in HF ids; the source's list of stop ids if it has one
  that starts with the vocabulary's EOS (instruct models)."""
  eos: Any = vocabulary.hf_eos_id
  source = (pathlib.Path(vocabulary.tokenizer_file).parent /
            hf_tokenizer_vocab.GENERATION_CONFIG_FILE)
  if source.is_file():
    stops = json.loads(source.read_text(encoding="utf-8")).get("eos_token_id")
    if isinstance(stops, list) and stops and stops[0] == eos:
      eos = stops
  return {"bos_token_id": vocabulary.hf_bos_id, "eos_token_id": eos,
          "pad_token_id": vocabulary.hf_pad_id}


def export(cfg: Any, params: Mapping[str, Any], vocabulary: Any
           ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
  """(config.json, tensors, generation_config.json) of a decoder network.

  Raises:
    ConversionError: no HFTokenizerVocabulary, a missing parameter, or a
      network Hugging Face cannot express.
  """
  vocabulary = _require_vocabulary(vocabulary)
  try:
    num_rows = hf_rows(cfg, params, vocabulary)
    tensors = hf_tensors(cfg, params, vocabulary, num_rows)
  except KeyError as e:
    raise ConversionError(f"params: '{e.args[0]}' missing for a decoder "
                          "network with this config") from e
  return (hf_config(cfg, vocabulary, num_rows), tensors,
          generation_config(vocabulary))


def start_id(vocabulary: Vocabulary, config: Mapping[str, Any]) -> Optional[int]:
  """The Hugging Face id a prompt starts with, as pad-jax's does (seqio id 0).

  `pad_hf_id`: the tokenizer's BOS when seqio's pad is the BOS (Llama, the
  demo vocabulary), else a row the tokenizer never emits (Qwen2.5, SmolLM2:
  a prompt must start with it explicitly). None when that row was not
  exported (untrained, `hf_rows`): pad-jax starts from a zero row there.
  """
  hf_id = vocabulary.pad_hf_id
  return hf_id if hf_id < int(config["vocab_size"]) else None


def import_params(config: Mapping[str, Any], tensors: Mapping[str, np.ndarray],
                  vocabulary: Any) -> dict[str, Any]:
  """The family's importer: `hf_import_decoder.convert_params`."""
  return hf_import_decoder.convert_params(config, tensors,
                                          _require_vocabulary(vocabulary))


# ------------------------------------------------------------------------------
# Tokenizer files.
# ------------------------------------------------------------------------------
def tokenizer_files(vocabulary: Vocabulary) -> tuple[dict[str, Any], str]:
  """The vocabulary's own files, and their description.

  `tokenizer.json` and the files of `TOKENIZER_FILES` next to it, as they
  are, except that `tokenizer_config.json` names the vocabulary's EOS and BOS
  (which constructor arguments may have changed).
  """
  path = pathlib.Path(vocabulary.tokenizer_file)
  files: dict[str, Any] = {hf_tokenizer_vocab.TOKENIZER_FILE:
                           path.read_text(encoding="utf-8")}
  for name in TOKENIZER_FILES:
    if (path.parent / name).is_file():
      files[name] = (path.parent / name).read_text(encoding="utf-8")
  config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast"}
  if "tokenizer_config.json" in files:
    config = json.loads(files["tokenizer_config.json"])
  token = vocabulary.tokenizer.id_to_token
  config["eos_token"] = token(vocabulary.hf_eos_id)
  bos: Optional[int] = vocabulary.hf_bos_id
  config["bos_token"] = None if bos is None else token(bos)
  files["tokenizer_config.json"] = config
  return files, (f"{config.get('tokenizer_class', 'PreTrainedTokenizerFast')} "
                 f"({hf_import_decoder.tokenizer_size(vocabulary)} ids; from "
                 f"{path})")
