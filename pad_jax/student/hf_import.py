"""Hugging Face T5 / CodeT5 checkpoints -> t5x (Orbax) checkpoints.

The library behind `python -m pad_jax.convert_hf` (documented there).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
from t5x import checkpoints
from t5x import partitioning
from t5x import train_state as train_state_lib
from t5x import utils

from pad_jax import atomic
from pad_jax.errors import ConfigError
from pad_jax.student import hf_tokenizer_vocab
from pad_jax.student import model_gin

LAYER_NORM_EPSILON = 1e-6  # t5x's LayerNorm has it fixed.
# Hugging Face activation names -> flax names with the same function.
_ACTIVATIONS = {
    "relu": "relu",
    "gelu_new": "gelu",  # tanh approximation, flax's default gelu
    "gelu_pytorch_tanh": "gelu",
    "silu": "silu",
    "swish": "silu",
}
# Restores a params-only checkpoint into any optimizer's fresh state:
# `utils.RestoreCheckpointConfig(assignment_map=..., fallback_to_scratch=True,
# strict=False)`, the t5x recipe for fine-tuning with another optimizer.
FRESH_OPTIMIZER_ASSIGNMENT_MAP = ((r"state/param_states.*", None),)
_EMBED_DUPLICATES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


class ConversionError(ConfigError):
  """The checkpoint or its config cannot be converted exactly.

  A `ConfigError`, so commands report it as one line, exit status 2.
  """


# ------------------------------------------------------------------------------
# Reading the Hugging Face directory.
# ------------------------------------------------------------------------------
def read_hf_config(hf_dir: str) -> dict[str, Any]:
  """Reads `config.json`, raising `ConversionError` naming the file."""
  path = pathlib.Path(hf_dir) / "config.json"
  if not path.is_file():
    raise ConversionError(f"{path}: not found (expected a Hugging Face model "
                          "directory with config.json)")
  try:
    return hf_tokenizer_vocab.read_json_object(path)
  except ValueError as e:
    raise ConversionError(str(e)) from e


def read_hf_weights(hf_dir: str) -> dict[str, np.ndarray]:
  """Reads all tensors as float32 numpy arrays, by their HF names."""
  root = pathlib.Path(hf_dir)
  single = root / "model.safetensors"
  index = root / "model.safetensors.index.json"
  torch_bin = root / "pytorch_model.bin"
  if single.is_file() or index.is_file():
    # Deferred on purpose: each weight format's reader is an optional,
    # heavy dependency, needed only when the directory holds that format.
    from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
    if single.is_file():
      files = [single]
    else:
      weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
      files = sorted({root / name for name in weight_map.values()})
    state = {}
    for path in files:
      state.update(load_file(str(path)))
  elif torch_bin.is_file():
    import torch  # pylint: disable=import-outside-toplevel
    loaded = torch.load(str(torch_bin), map_location="cpu", weights_only=True)
    state = {k: v.float().numpy() for k, v in loaded.items()}
  else:
    raise ConversionError(
        f"{root}: no model.safetensors, model.safetensors.index.json or "
        "pytorch_model.bin")
  return {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}


# ------------------------------------------------------------------------------
# Config and parameter mapping.
# ------------------------------------------------------------------------------
def _output_layer(config: Mapping[str, Any]) -> tuple[bool, bool]:
  """(tied, scaled): how the checkpoint's logits are computed."""
  tied = config.get("tie_word_embeddings", True) is not False
  # transformers >= 5 always ties and records v1.0's scaling separately.
  scaled = config.get("scale_decoder_outputs", tied)
  return tied, bool(scaled)


def network_config(config: Mapping[str, Any],
                   source: str = "config.json") -> dict[str, Any]:
  """`pad_jax.student.network.T5Config` fields for a Hugging Face T5 config.

  Args:
    config: the parsed `config.json`.
    source: the file it was read from (for error messages).

  Returns:
    A dict of T5Config keyword arguments (`logits_via_embedding` is set for
    the tied-and-scaled v1.0 head only).

  Raises:
    ConversionError: naming the field the network cannot express.
  """
  def require(key):
    if key not in config:
      raise ConversionError(f"{source}: field '{key}': missing")
    return config[key]

  model_type = config.get("model_type", "t5")
  if model_type not in ("t5", "codet5"):
    raise ConversionError(f"{source}: field 'model_type': {model_type!r} is "
                          "not a T5 encoder-decoder")
  if config.get("is_encoder_decoder", True) is not True:
    raise ConversionError(f"{source}: field 'is_encoder_decoder': only "
                          "encoder-decoder T5 models are supported")
  eps = config.get("layer_norm_epsilon", LAYER_NORM_EPSILON)
  if eps != LAYER_NORM_EPSILON:
    raise ConversionError(f"{source}: field 'layer_norm_epsilon': {eps} "
                          f"unsupported (t5x's LayerNorm uses {LAYER_NORM_EPSILON})")
  proj = config.get("feed_forward_proj", "relu")
  parts = proj.split("-")
  gated = parts[0] == "gated"
  # As transformers' T5Config: "gated-gelu" means the tanh-approximated gelu.
  act = "gelu_new" if proj == "gated-gelu" else parts[-1]
  if act not in _ACTIVATIONS:
    raise ConversionError(
        f"{source}: field 'feed_forward_proj': activation {act!r} "
        f"unsupported (supported: {sorted(_ACTIVATIONS)}; exact-erf 'gelu' "
        "has no flax string name in t5x's MlpBlock)")
  flax_act = _ACTIVATIONS[act]
  tied, scaled = _output_layer(config)
  num_layers = int(require("num_layers"))
  return dict(
      vocab_size=int(require("vocab_size")),
      emb_dim=int(require("d_model")),
      num_heads=int(require("num_heads")),
      num_encoder_layers=num_layers,
      num_decoder_layers=int(config.get("num_decoder_layers") or num_layers),
      head_dim=int(require("d_kv")),
      mlp_dim=int(require("d_ff")),
      mlp_activations=(flax_act, "linear") if gated else (flax_act,),
      dropout_rate=float(config.get("dropout_rate", 0.1)),
      logits_via_embedding=tied and scaled,
      relative_attention_num_buckets=int(
          config.get("relative_attention_num_buckets", 32)),
      relative_attention_max_distance=int(
          config.get("relative_attention_max_distance", 128)),
  )


class Weights:
  """HF tensors, popped as they are mapped so leftovers can be reported."""

  def __init__(self, state: Mapping[str, np.ndarray]):
    self._state = dict(state)

  def pop(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in self._state:
      raise ConversionError(f"weights: tensor '{name}' missing")
    value = self._state.pop(name)
    if value.shape != tuple(shape):
      raise ConversionError(f"weights: tensor '{name}' has shape "
                            f"{value.shape}, expected {tuple(shape)}")
    return value

  def maybe_pop(self, name: str) -> Optional[np.ndarray]:
    return self._state.pop(name, None)

  def leftovers(self) -> list[str]:
    return sorted(self._state)


def _attention(w: Weights, prefix: str, d: int, inner: int) -> dict:
  # HF Linear weights are [out, in]; t5x kernels are [in, out].
  return {
      "query": {"kernel": w.pop(f"{prefix}.q.weight", (inner, d)).T},
      "key": {"kernel": w.pop(f"{prefix}.k.weight", (inner, d)).T},
      "value": {"kernel": w.pop(f"{prefix}.v.weight", (inner, d)).T},
      "out": {"kernel": w.pop(f"{prefix}.o.weight", (d, inner)).T},
  }


def _mlp(w: Weights, prefix: str, d: int, ff: int, gated: bool) -> dict:
  if gated:
    return {
        "wi_0": {"kernel": w.pop(f"{prefix}.wi_0.weight", (ff, d)).T},
        "wi_1": {"kernel": w.pop(f"{prefix}.wi_1.weight", (ff, d)).T},
        "wo": {"kernel": w.pop(f"{prefix}.wo.weight", (d, ff)).T},
    }
  return {"wi": {"kernel": w.pop(f"{prefix}.wi.weight", (ff, d)).T},
          "wo": {"kernel": w.pop(f"{prefix}.wo.weight", (d, ff)).T}}


def _scale(w: Weights, name: str, d: int) -> dict:
  return {"scale": w.pop(name, (d,))}


def _relpos(w: Weights, stack: str, cfg: Mapping[str, Any]) -> dict:
  return {"rel_embedding": w.pop(
      f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
      (cfg["relative_attention_num_buckets"], cfg["num_heads"])).T}


def _encoder(w: Weights, cfg: Mapping[str, Any]) -> dict:
  d, ff, inner = cfg["emb_dim"], cfg["mlp_dim"], cfg["num_heads"] * cfg["head_dim"]
  gated = len(cfg["mlp_activations"]) == 2
  encoder = {"relpos_bias": _relpos(w, "encoder", cfg)}
  for i in range(cfg["num_encoder_layers"]):
    p = f"encoder.block.{i}.layer"
    encoder[f"layers_{i}"] = {
        "pre_attention_layer_norm": _scale(w, f"{p}.0.layer_norm.weight", d),
        "attention": _attention(w, f"{p}.0.SelfAttention", d, inner),
        "pre_mlp_layer_norm": _scale(w, f"{p}.1.layer_norm.weight", d),
        "mlp": _mlp(w, f"{p}.1.DenseReluDense", d, ff, gated),
    }
  encoder["encoder_norm"] = _scale(w, "encoder.final_layer_norm.weight", d)
  return encoder


def _decoder(w: Weights, cfg: Mapping[str, Any]) -> dict:
  d, ff, inner = cfg["emb_dim"], cfg["mlp_dim"], cfg["num_heads"] * cfg["head_dim"]
  gated = len(cfg["mlp_activations"]) == 2
  decoder = {"relpos_bias": _relpos(w, "decoder", cfg)}
  for i in range(cfg["num_decoder_layers"]):
    p = f"decoder.block.{i}.layer"
    decoder[f"layers_{i}"] = {
        "pre_self_attention_layer_norm": _scale(
            w, f"{p}.0.layer_norm.weight", d),
        "self_attention": _attention(w, f"{p}.0.SelfAttention", d, inner),
        "pre_cross_attention_layer_norm": _scale(
            w, f"{p}.1.layer_norm.weight", d),
        "encoder_decoder_attention": _attention(w, f"{p}.1.EncDecAttention", d,
                                                inner),
        "pre_mlp_layer_norm": _scale(w, f"{p}.2.layer_norm.weight", d),
        "mlp": _mlp(w, f"{p}.2.DenseReluDense", d, ff, gated),
    }
  decoder["decoder_norm"] = _scale(w, "decoder.final_layer_norm.weight", d)
  return decoder


def _logits_dense(w: Weights, config: Mapping[str, Any],
                  shared: np.ndarray) -> Optional[dict]:
  """The explicit output layer, or None for v1.0's tied and scaled one."""
  tied, scaled = _output_layer(config)
  head = w.maybe_pop("lm_head.weight")
  if head is not None and head.shape != shared.shape:
    raise ConversionError(f"weights: tensor 'lm_head.weight' has shape "
                          f"{head.shape}, expected {shared.shape}")
  if tied and head is not None and not np.array_equal(head, shared):
    raise ConversionError("weights: 'lm_head.weight' differs from "
                          "'shared.weight' but config.json ties them")
  if not tied and head is None:
    raise ConversionError("weights: tensor 'lm_head.weight' missing "
                          "(config.json: tie_word_embeddings is false)")
  if tied and scaled:
    return None
  d = shared.shape[1]
  kernel = (shared if tied else head).T * (d**-0.5 if scaled else 1.0)
  return {"kernel": kernel.astype(np.float32)}


def convert_params(config: Mapping[str, Any],
                   state: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """Maps HF tensors to the t5x parameter tree (`params` collection).

  Args:
    config: the parsed `config.json`.
    state: HF tensor name -> array.

  Returns:
    The nested parameter dict shared by `pad_jax.student.network.Transformer` and
    `t5x.examples.t5.network.Transformer`.

  Raises:
    ConversionError: a tensor is missing, misshaped, or left unused.
  """
  cfg = network_config(config)
  w = Weights(state)
  shared = w.pop("shared.weight", (cfg["vocab_size"], cfg["emb_dim"]))
  for name in _EMBED_DUPLICATES:
    copy = w.maybe_pop(name)
    if copy is not None and not np.array_equal(copy, shared):
      raise ConversionError(f"weights: tensor '{name}' differs from "
                            "'shared.weight' (untied input embeddings)")
  encoder, decoder = _encoder(w, cfg), _decoder(w, cfg)
  logits_dense = _logits_dense(w, config, shared)
  if logits_dense is not None:
    decoder["logits_dense"] = logits_dense
  leftovers = w.leftovers()
  if leftovers:
    raise ConversionError(f"weights: {len(leftovers)} tensor(s) not mapped, "
                          f"e.g. '{leftovers[0]}'")
  return {"token_embedder": {"embedding": shared},
          "encoder": encoder, "decoder": decoder}


# ------------------------------------------------------------------------------
# Writing the t5x checkpoint.
# ------------------------------------------------------------------------------
MODEL_GIN_TEMPLATE = """\
# Written by `python -m pad_jax.convert_hf` for {hf_dir}.
# The project's CodeT5 model file with this checkpoint's dimensions. The
# include resolves with the project's gin_configs/ on the gin search path
# (`--gin_search_paths=gin_configs`; pad-jax commands add it themselves).
from __gin__ import dynamic_registration
from pad_jax.student import network  # this file's `network.` is pad-jax's, whatever else is loaded

include 'models/codet5_small.gin'

network.T5Config:
{fields}
"""


def model_gin_text(cfg: Mapping[str, Any], hf_dir: str) -> str:
  """The `model.gin` that describes a converted checkpoint."""
  keys = ("vocab_size", "emb_dim", "num_heads", "num_encoder_layers",
          "num_decoder_layers", "head_dim", "mlp_dim", "mlp_activations",
          "logits_via_embedding", "relative_attention_num_buckets",
          "relative_attention_max_distance")
  fields = "\n".join(f"  {k} = {tuple(cfg[k])!r}" if isinstance(cfg[k], tuple)
                     else f"  {k} = {cfg[k]!r}" for k in keys)
  return MODEL_GIN_TEMPLATE.format(hf_dir=hf_dir, fields=fields)


def write_checkpoint(model: Any, params: Mapping[str, Any], out_dir: str,
                     step: int = 0, with_optimizer_state: bool = False) -> str:
  """Writes `params` as a t5x Orbax checkpoint.

  Args:
    model: the t5x model (e.g. `EncoderDecoderModel`) the checkpoint is for.
    params: the parameter tree (must match the model's shapes exactly).
    out_dir: model directory (created if missing); the checkpoint goes
      to `out_dir/checkpoint_<step>`.
    step: the step recorded in the checkpoint.
    with_optimizer_state: also write the fresh state of the model's
      `optimizer_def` (then t5x restores it with `strict=True`, but only with
      that same optimizer). Without it (the default, like a pre-trained
      checkpoint) any optimizer starts fresh with `strict=False`.

  Returns:
    The checkpoint directory.
  """
  if "://" not in out_dir:
    # t5x's checkpoint manager would save into a missing directory's parent.
    os.makedirs(out_dir, exist_ok=True)
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  types = {k: jnp.int32 for k in shapes}
  partitioner = partitioning.PjitPartitioner(num_partitions=1)
  optimizer_def = model.optimizer_def if with_optimizer_state else None
  initializer = utils.TrainStateInitializer(
      optimizer_def=optimizer_def, init_fn=model.get_initial_variables,
      input_shapes=shapes, input_types=types, partitioner=partitioner)
  expected = initializer.global_train_state_shape.params
  flat_expected = flax.traverse_util.flatten_dict(flax.core.unfreeze(expected))
  flat_params = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
  for key in sorted(set(flat_expected) | set(flat_params)):
    name = "/".join(key)
    if key not in flat_params:
      raise ConversionError(f"params: '{name}' missing for this model config")
    if key not in flat_expected:
      raise ConversionError(f"params: '{name}' not in this model config")
    if tuple(flat_params[key].shape) != tuple(flat_expected[key].shape):
      raise ConversionError(
          f"params: '{name}' has shape {tuple(flat_params[key].shape)}, the "
          f"model config expects {tuple(flat_expected[key].shape)}")
  axes = initializer.global_train_state_shape.params_axes
  params = jax.tree.map(jnp.asarray, flax.core.unfreeze(params))
  variables = flax.core.freeze({"params": params, "params_axes": axes})
  if optimizer_def:
    state = train_state_lib.FlaxOptimTrainState.create(optimizer_def, variables)
  else:
    state = train_state_lib.InferenceState.create(variables)
  state = state.replace_step(jnp.asarray(step, dtype=jnp.int32))
  manager = checkpoints.OrbaxCheckpointManagerInterface(
      directory=out_dir, train_state=initializer.global_train_state_shape,
      partitioner=partitioner)
  manager.save(state)
  manager.wait_until_finished()
  manager.close()
  return os.path.join(out_dir, f"checkpoint_{step}")


def convert(hf_dir: str, out_dir: str) -> str:
  """Converts `hf_dir` into `out_dir/checkpoint_0` + `out_dir/model.gin`.

  Returns:
    The checkpoint directory.

  Raises:
    ConversionError: naming the file (and field) that cannot be converted.
  """
  config = read_hf_config(hf_dir)
  cfg = network_config(config, source=str(pathlib.Path(hf_dir) / "config.json"))
  params = convert_params(config, read_hf_weights(hf_dir))
  gin_path = os.path.join(out_dir, "model.gin")
  atomic.write_text(gin_path, model_gin_text(cfg, hf_dir))
  model = model_gin.load_model_from_gin([gin_path])
  return write_checkpoint(model, params, out_dir)
