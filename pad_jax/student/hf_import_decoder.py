"""Hugging Face Llama / Qwen2 / Mistral checkpoints -> t5x (Orbax) checkpoints.

The decoder-only half of `python -m pad_jax.convert_hf` (`convert_any`
picks it or the T5 importer, `hf_import`, by config.json's `model_type`).
Reads `config.json` and the weights (`model.safetensors`, a sharded
`model.safetensors.index.json` or `pytorch_model.bin`, through
`hf_import.read_hf_weights`), maps every tensor onto
`pad_jax.student.decoder_network.DecoderOnlyTransformer`'s parameters
(shape-checked; missing or unused tensors are errors), and writes
`out_dir/checkpoint_0` (parameters only, as `hf_import.write_checkpoint`
does) and `out_dir/model.gin` (`models/smollm2_135m.gin` with this
checkpoint's dimensions, and the checkpoint's `tokenizer.json` as its
vocabulary when the directory has one).

With a tokenizer, the embedding and (untied) LM-head rows are reordered
from Hugging Face ids to that vocabulary's seqio ids (`HFTokenizerVocabulary`
swaps id 0 with its seqio pad, `row_permutation`). When the pad is a new id
past the last row (SmolLM2: no spare rows), the rows are first padded with
zeros to the next multiple of `ROW_MULTIPLE`, and the network's `vocab_size`
(written to model.gin) grows accordingly; `hf_export_decoder` drops them
again while they are untouched.

What the network cannot compute exactly is refused, naming the config.json
field: another activation than SiLU, sliding-window attention, MLP biases,
partial rotary embeddings, rope types other than default / linear / llama3.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Mapping

import numpy as np
import seqio
from t5x import models

from pad_jax import atomic
from pad_jax.student import decoder_layers
from pad_jax.student import decoder_network
from pad_jax.student import hf_import
from pad_jax.student import hf_tokenizer_vocab
from pad_jax.student.hf_import import ConversionError

# The HF model types this importer maps; their tensor names are Llama's.
MODEL_TYPES = ("llama", "qwen2", "mistral")
T5_MODEL_TYPES = ("t5", "codet5")
# Rows added for a new seqio-pad id round the vocabulary up to this: a
# multiple of any model-parallel degree t5x's `vocab` axis is sharded over
# (1..128, powers of two), and of the 128-lane tiles of TPU / GPU matmuls.
ROW_MULTIPLE = 128


# ------------------------------------------------------------------------------
# Config mapping.
# ------------------------------------------------------------------------------
def _rope_fields(config: Mapping[str, Any], source: str) -> dict[str, Any]:
  """DecoderConfig rope fields from `rope_parameters` (transformers >= 5)
  or `rope_theta` + `rope_scaling` (transformers 4)."""
  field = "rope_parameters" if "rope_parameters" in config else "rope_scaling"
  scaling = config.get(field) or {}
  theta = scaling.get("rope_theta", config.get("rope_theta", 10000.0))
  rope_type = scaling.get("rope_type", scaling.get("type", "default"))
  if rope_type not in decoder_layers.ROPE_TYPES:
    raise ConversionError(
        f"{source}: field '{field}': rope_type {rope_type!r} unsupported "
        f"(supported: {', '.join(decoder_layers.ROPE_TYPES)})")
  partial = scaling.get("partial_rotary_factor",
                        config.get("partial_rotary_factor", 1.0))
  if partial != 1.0:
    raise ConversionError(f"{source}: field 'partial_rotary_factor': "
                          f"{partial} unsupported (only whole-head rotation)")

  def require(key):
    if key not in scaling:
      raise ConversionError(f"{source}: field '{field}.{key}': missing "
                            f"(rope_type {rope_type!r})")
    return scaling[key]

  fields = dict(rope_theta=float(theta), rope_type=rope_type)
  if rope_type in ("linear", "llama3"):
    fields["rope_factor"] = float(require("factor"))
  if rope_type == "llama3":
    fields.update(
        rope_low_freq_factor=float(require("low_freq_factor")),
        rope_high_freq_factor=float(require("high_freq_factor")),
        rope_original_max_position=int(
            require("original_max_position_embeddings")))
  return fields


def _refuse_unsupported(config: Mapping[str, Any], source: str) -> None:
  """Raises ConversionError for what the network cannot compute exactly."""
  model_type = config.get("model_type")
  act = config.get("hidden_act", "silu")
  if act != "silu":
    raise ConversionError(f"{source}: field 'hidden_act': {act!r} "
                          "unsupported (SwiGLU with 'silu' only)")
  if config.get("mlp_bias", False):
    raise ConversionError(f"{source}: field 'mlp_bias': true unsupported")
  if model_type == "qwen2" and config.get("use_sliding_window", False):
    raise ConversionError(f"{source}: field 'use_sliding_window': "
                          "sliding-window attention unsupported")
  window = config.get("sliding_window")
  max_pos = config.get("max_position_embeddings")
  if (model_type == "mistral" and window is not None and
      (max_pos is None or window < max_pos)):
    raise ConversionError(f"{source}: field 'sliding_window': {window} "
                          "unsupported (sliding-window attention)")


def network_config(config: Mapping[str, Any],
                   source: str = "config.json") -> dict[str, Any]:
  """`decoder_network.DecoderConfig` fields for an HF Llama-family config.

  Args:
    config: the parsed `config.json`.
    source: the file it was read from (for error messages).

  Returns:
    DecoderConfig keyword arguments (no `dtype` / `dropout_rate`: the model
    file's).

  Raises:
    ConversionError: naming the field the network cannot express.
  """
  def require(key):
    if config.get(key) is None:
      raise ConversionError(f"{source}: field '{key}': missing")
    return config[key]

  model_type = config.get("model_type")
  if model_type not in MODEL_TYPES:
    raise ConversionError(f"{source}: field 'model_type': {model_type!r} is "
                          f"not one of {', '.join(MODEL_TYPES)}")
  _refuse_unsupported(config, source)
  emb_dim, num_heads = int(require("hidden_size")), int(
      require("num_attention_heads"))
  bias = bool(config.get("attention_bias", False))
  return dict(
      vocab_size=int(require("vocab_size")),
      emb_dim=emb_dim,
      num_heads=num_heads,
      num_kv_heads=int(config.get("num_key_value_heads") or num_heads),
      num_layers=int(require("num_hidden_layers")),
      head_dim=int(config.get("head_dim") or emb_dim // num_heads),
      mlp_dim=int(require("intermediate_size")),
      rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
      **_rope_fields(config, source),
      qkv_bias=True if model_type == "qwen2" else bias,
      out_bias=bias if model_type == "llama" else False,
      # LlamaConfig, Qwen2Config and MistralConfig all default to untied.
      tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
      max_position_embeddings=int(config.get("max_position_embeddings", 8192)),
  )


# ------------------------------------------------------------------------------
# Parameter mapping.
# ------------------------------------------------------------------------------
def _dense(w: hf_import.Weights, name: str, out_dim: int, in_dim: int,
           bias: bool) -> dict:
  # HF Linear weights are [out, in]; the network's kernels are [in, out].
  out = {"kernel": w.pop(f"{name}.weight", (out_dim, in_dim)).T}
  if bias:
    out["bias"] = w.pop(f"{name}.bias", (out_dim,))
  return out


def _layer(w: hf_import.Weights, i: int, cfg: Mapping[str, Any]) -> dict:
  d, ff = cfg["emb_dim"], cfg["mlp_dim"]
  q_dim = cfg["num_heads"] * cfg["head_dim"]
  kv_dim = cfg["num_kv_heads"] * cfg["head_dim"]
  p = f"model.layers.{i}"
  attn = f"{p}.self_attn"
  w.maybe_pop(f"{attn}.rotary_emb.inv_freq")  # Older checkpoints store it.
  return {
      "pre_self_attention_layer_norm": {
          "scale": w.pop(f"{p}.input_layernorm.weight", (d,))},
      "self_attention": {
          "query": _dense(w, f"{attn}.q_proj", q_dim, d, cfg["qkv_bias"]),
          "key": _dense(w, f"{attn}.k_proj", kv_dim, d, cfg["qkv_bias"]),
          "value": _dense(w, f"{attn}.v_proj", kv_dim, d, cfg["qkv_bias"]),
          "out": _dense(w, f"{attn}.o_proj", d, q_dim, cfg["out_bias"]),
      },
      "pre_mlp_layer_norm": {
          "scale": w.pop(f"{p}.post_attention_layernorm.weight", (d,))},
      "mlp": {
          "wi_0": _dense(w, f"{p}.mlp.gate_proj", ff, d, False),
          "wi_1": _dense(w, f"{p}.mlp.up_proj", ff, d, False),
          "wo": _dense(w, f"{p}.mlp.down_proj", d, ff, False),
      },
  }


def tokenizer_size(vocabulary: hf_tokenizer_vocab.HFTokenizerVocabulary) -> int:
  """HF ids of the tokenizer: 0 .. size-1 (added tokens included)."""
  return max(vocabulary.tokenizer.get_vocab(with_added_tokens=True).values()) + 1


def seqio_rows(hf_rows: int,
               vocabulary: hf_tokenizer_vocab.HFTokenizerVocabulary) -> int:
  """Rows of the network's vocabulary for `hf_rows` HF embedding rows.

  `hf_rows` when they hold every seqio id; else (the seqio pad is a new id,
  `hf_rows` exactly the tokenizer's size) `vocabulary.vocab_size` rounded up
  to `ROW_MULTIPLE`.

  Raises:
    ConversionError: the tokenizer has ids past the weights' rows.
  """
  if hf_rows >= vocabulary.vocab_size:
    return hf_rows
  size = tokenizer_size(vocabulary)
  if hf_rows < size:
    raise ConversionError(
        f"{vocabulary.tokenizer_file}: {size} token ids, but config.json's "
        f"vocab_size (the embedding's rows) is {hf_rows}")
  return -(-vocabulary.vocab_size // ROW_MULTIPLE) * ROW_MULTIPLE


def to_seqio_order(rows: np.ndarray,
                   vocabulary: hf_tokenizer_vocab.HFTokenizerVocabulary
                   ) -> np.ndarray:
  """HF-ordered embedding / LM-head rows -> seqio order, zero-padded."""
  num_rows = seqio_rows(rows.shape[0], vocabulary)
  padded = np.zeros((num_rows,) + rows.shape[1:], rows.dtype)
  padded[:rows.shape[0]] = rows
  return padded[vocabulary.row_permutation(num_rows)]


def convert_params(
    config: Mapping[str, Any], state: Mapping[str, np.ndarray],
    vocabulary: hf_tokenizer_vocab.HFTokenizerVocabulary | None = None
) -> dict[str, Any]:
  """Maps HF tensors to `DecoderOnlyTransformer`'s `params` tree.

  Args:
    config: the parsed `config.json`.
    state: HF tensor name -> float32 array.
    vocabulary: the model's vocabulary; its row order and size (see
      `to_seqio_order`) for the embedding and LM head. None: HF's order.

  Returns:
    The nested parameter dict.

  Raises:
    ConversionError: a tensor is missing, misshaped, or left unused, or a
      tied config's `lm_head.weight` differs from the embedding.
  """
  cfg = network_config(config)
  w = hf_import.Weights(state)
  embedding = w.pop("model.embed_tokens.weight",
                    (cfg["vocab_size"], cfg["emb_dim"]))
  reorder = ((lambda rows: to_seqio_order(rows, vocabulary)) if vocabulary
             else (lambda rows: rows))
  params = {"token_embedder": {"embedding": reorder(embedding)}}
  for i in range(cfg["num_layers"]):
    params[f"layers_{i}"] = _layer(w, i, cfg)
  params["decoder_norm"] = {"scale": w.pop("model.norm.weight",
                                           (cfg["emb_dim"],))}
  head = w.maybe_pop("lm_head.weight")
  if head is not None and head.shape != embedding.shape:
    raise ConversionError(f"weights: tensor 'lm_head.weight' has shape "
                          f"{head.shape}, expected {embedding.shape}")
  if cfg["tie_word_embeddings"]:
    if head is not None and not np.array_equal(head, embedding):
      raise ConversionError("weights: 'lm_head.weight' differs from "
                            "'model.embed_tokens.weight' but config.json "
                            "ties them")
  elif head is None:
    raise ConversionError("weights: tensor 'lm_head.weight' missing "
                          "(config.json: tie_word_embeddings is false)")
  else:
    params["logits_dense"] = {"kernel": reorder(head).T}
  leftovers = w.leftovers()
  if leftovers:
    raise ConversionError(f"weights: {len(leftovers)} tensor(s) not mapped, "
                          f"e.g. '{leftovers[0]}'")
  return params


# ------------------------------------------------------------------------------
# Writing model.gin and the checkpoint.
# ------------------------------------------------------------------------------
MODEL_GIN_TEMPLATE = """\
# Written by `python -m pad_jax.convert_hf` for {hf_dir} ({model_type}).
# The project's decoder-only model file with this checkpoint's dimensions.
# The include resolves with the project's gin_configs/ on the gin search path
# (`--gin_search_paths=gin_configs`; pad-jax commands add it themselves).
{vocab_comment}
from __gin__ import dynamic_registration
from pad_jax.student import decoder_network
{vocab_import}
include 'models/smollm2_135m.gin'
{vocab_binding}
decoder_network.DecoderConfig:
{fields}
"""
_TOKENIZER_LINES = (
    "# VOCABULARY: the checkpoint's tokenizer.json.",
    "from pad_jax.student import hf_tokenizer_vocab",
    "VOCABULARY = @hf_tokenizer_vocab.HFTokenizerVocabulary()\n"
    "hf_tokenizer_vocab.HFTokenizerVocabulary.tokenizer_json_path = {path!r}\n")
_NO_TOKENIZER_LINES = (
    "# VOCABULARY: required (no tokenizer.json was found next to the weights);\n"
    "# give it as models/smollm2_135m.gin's header describes.", "", "")


def _tokenizer_path(hf_dir: str) -> pathlib.Path:
  return pathlib.Path(hf_dir).resolve() / hf_tokenizer_vocab.TOKENIZER_FILE


def tokenizer_vocabulary(
    hf_dir: str) -> hf_tokenizer_vocab.HFTokenizerVocabulary | None:
  """The vocabulary `model_gin_text` binds for `hf_dir` (None: no tokenizer)."""
  tokenizer = _tokenizer_path(hf_dir)
  if not tokenizer.is_file():
    return None
  return hf_tokenizer_vocab.HFTokenizerVocabulary(tokenizer_json_path=str(tokenizer))


def model_gin_text(cfg: Mapping[str, Any], hf_dir: str,
                   model_type: str) -> str:
  """The `model.gin` describing a converted decoder-only checkpoint."""
  tokenizer = _tokenizer_path(hf_dir)
  if tokenizer.is_file():
    comment, imports, binding = _TOKENIZER_LINES
    binding = binding.format(path=str(tokenizer))
  else:
    comment, imports, binding = _NO_TOKENIZER_LINES
  fields = "\n".join(f"  {k} = {v!r}" for k, v in cfg.items())
  return MODEL_GIN_TEMPLATE.format(
      hf_dir=hf_dir, model_type=model_type, vocab_comment=comment,
      vocab_import=imports, vocab_binding=binding, fields=fields)


def model_for(cfg: Mapping[str, Any],
              vocabulary: seqio.Vocabulary | None = None,
              optimizer_def: Any = None) -> models.DecoderOnlyModel:
  """t5x's DecoderOnlyModel over the network `cfg` describes (fp32).

  The vocabulary defaults to a pass-through one of the config's size (what
  writing a checkpoint needs: only the parameter shapes matter).
  """
  module = decoder_network.DecoderOnlyTransformer(
      decoder_network.DecoderConfig(**cfg))
  vocabulary = vocabulary or seqio.PassThroughVocabulary(cfg["vocab_size"])
  return models.DecoderOnlyModel(module, vocabulary, optimizer_def)


def convert(hf_dir: str, out_dir: str) -> str:
  """Converts a Llama-family `hf_dir` into `out_dir/checkpoint_0` + `model.gin`.

  Returns:
    The checkpoint directory.

  Raises:
    ConversionError: naming the file (and field) that cannot be converted.
  """
  config = hf_import.read_hf_config(hf_dir)
  cfg = network_config(config,
                       source=str(pathlib.Path(hf_dir) / "config.json"))
  vocabulary = tokenizer_vocabulary(hf_dir)
  try:
    params = convert_params(config, hf_import.read_hf_weights(hf_dir),
                            vocabulary)
  except ConversionError:
    raise
  except (OSError, ValueError) as e:  # A bad tokenizer file, named in `e`.
    raise ConversionError(str(e)) from e
  cfg["vocab_size"] = params["token_embedder"]["embedding"].shape[0]
  atomic.write_text(os.path.join(out_dir, "model.gin"),
                    model_gin_text(cfg, hf_dir, config["model_type"]))
  return hf_import.write_checkpoint(model_for(cfg), params, out_dir)


def convert_any(hf_dir: str, out_dir: str) -> str:
  """Converts `hf_dir` with the importer for config.json's `model_type`.

  T5 / CodeT5 (or no `model_type`, as early T5 configs): `hf_import.convert`;
  Llama, Qwen2, Mistral: `convert`.

  Raises:
    ConversionError: an unknown `model_type`, or what the importer refuses.
  """
  config = hf_import.read_hf_config(hf_dir)
  model_type = config.get("model_type", "t5")
  if model_type in T5_MODEL_TYPES:
    return hf_import.convert(hf_dir, out_dir)
  if model_type in MODEL_TYPES:
    return convert(hf_dir, out_dir)
  raise ConversionError(
      f"{pathlib.Path(hf_dir) / 'config.json'}: field 'model_type': "
      f"{model_type!r} unsupported (supported: "
      f"{', '.join(T5_MODEL_TYPES + MODEL_TYPES)})")
