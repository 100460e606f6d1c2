"""t5x student checkpoints -> Hugging Face model directories.

The library behind `python -m pad_jax.export_hf` (documented there), the
inverse of `hf_import`: the parameters of a t5x checkpoint become
`model.safetensors` + `config.json` (+ `generation_config.json`, the
tokenizer files and a `README.md` model card, `hf_model_card`).

One `Family` (exporter + importer) per model family, chosen by the type of
the network's config (`FAMILIES`): the T5 / CodeT5 encoder-decoder of
`pad_jax.student.network` and t5x's example network (same parameter tree),
and the Llama / Qwen2 decoder-only network (`hf_export_decoder`; a student
on the demo vocabulary gets a tokenizer whose `<s>` starts the prompt,
`decoder_vocabulary`).

Every export is checked by importing it back with the family's importer
(`hf_import.convert_params` for T5): the written config and tensors must give
the checkpoint's parameters bit for bit, or nothing is written.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
from typing import Any, Callable, Mapping, Optional, Sequence

import flax
import jax.numpy as jnp
import numpy as np
from t5x import partitioning
from t5x import utils
from t5x.examples.t5 import network as t5x_network
import tokenizers
from tokenizers import processors

from pad_jax import atomic
from pad_jax import checkpoints
from pad_jax.errors import ConfigError
from pad_jax.student import decoder_network
from pad_jax.student import hf_export_decoder
from pad_jax.student import hf_import
from pad_jax.student import hf_model_card
from pad_jax.student import hf_tokenizer_vocab
from pad_jax.student import model_gin
from pad_jax.student import network as pad_network
from pad_jax.student import vocab as vocab_lib

WEIGHTS_FILE = "model.safetensors"
# t5x starts every decode from id 0 (seqio's PAD), as T5 and CodeT5 do.
DECODER_START_ID = vocab_lib.PAD_ID
# flax activation name -> Hugging Face's name for the same function (the
# inverse of `hf_import`'s table; `_check_round_trip` proves it).
_HF_ACTIVATIONS = {"relu": "relu", "gelu": "gelu_new", "silu": "silu"}


class ExportError(ConfigError):
  """The checkpoint or its model cannot be exported exactly.

  A `ConfigError`, so commands report it as one line, exit status 2.
  """


@dataclasses.dataclass(frozen=True)
class HfModel:
  """What a family's exporter makes of a t5x network and its parameters.

  Attributes:
    config: the `config.json` object.
    tensors: Hugging Face tensor name -> float32 array.
    generation: the `generation_config.json` object (without max_new_tokens).
    description: the model family in words, for the model card.
  """

  config: dict[str, Any]
  tensors: dict[str, np.ndarray]
  generation: dict[str, Any]
  description: str


# ------------------------------------------------------------------------------
# The T5 / CodeT5 encoder-decoder family.
# ------------------------------------------------------------------------------
def _feed_forward_proj(activations: Sequence[str]) -> str:
  """T5Config's `feed_forward_proj` for t5x's `mlp_activations`."""
  acts = tuple(activations)
  if len(acts) == 1 and acts[0] in _HF_ACTIVATIONS:
    return _HF_ACTIVATIONS[acts[0]]
  if len(acts) == 2 and acts[1] == "linear" and acts[0] in _HF_ACTIVATIONS:
    # "gated-gelu" is transformers' name for the tanh-approximated gelu.
    return f"gated-{acts[0]}"
  raise ExportError(f"network config: field 'mlp_activations': {acts} has no "
                    "Hugging Face T5 equivalent (supported: (a,) or "
                    f"(a, 'linear') with a in {sorted(_HF_ACTIVATIONS)})")


def t5_config(cfg: Any, vocabulary: Any) -> dict[str, Any]:
  """The Hugging Face `config.json` of a t5x T5 network config.

  Args:
    cfg: `pad_jax.student.network.T5Config` or t5x's example `T5Config`
      (which fixes 32 relative-position buckets, max distance 128).
    vocabulary: the model's seqio vocabulary (its EOS id).

  Returns:
    A `T5ForConditionalGeneration` config. The output layer: tied and scaled
    by `d_model**-0.5` (T5 v1.0 / CodeT5) for `logits_via_embedding`; else an
    untied `lm_head` without scaling (`tie_word_embeddings: false`, read as
    such by transformers 4 and 5).
  """
  tied = bool(cfg.logits_via_embedding)
  config = {
      "architectures": ["T5ForConditionalGeneration"],
      "model_type": "t5",
      "vocab_size": int(cfg.vocab_size),
      "d_model": int(cfg.emb_dim),
      "d_kv": int(cfg.head_dim),
      "d_ff": int(cfg.mlp_dim),
      "num_layers": int(cfg.num_encoder_layers),
      "num_decoder_layers": int(cfg.num_decoder_layers),
      "num_heads": int(cfg.num_heads),
      "relative_attention_num_buckets": int(
          getattr(cfg, "relative_attention_num_buckets", 32)),
      "relative_attention_max_distance": int(
          getattr(cfg, "relative_attention_max_distance", 128)),
      "dropout_rate": float(cfg.dropout_rate),
      "layer_norm_epsilon": hf_import.LAYER_NORM_EPSILON,
      "initializer_factor": 1.0,
      "feed_forward_proj": _feed_forward_proj(cfg.mlp_activations),
      "is_encoder_decoder": True,
      "tie_word_embeddings": tied,
      "use_cache": True,
      "decoder_start_token_id": DECODER_START_ID,
      "pad_token_id": vocab_lib.PAD_ID,
      "eos_token_id": int(vocabulary.eos_id),
  }
  if not tied:
    config["scale_decoder_outputs"] = False  # transformers 5's own key
  return config


def _f32(x: Any) -> np.ndarray:
  return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def _kernel(p: Mapping[str, Any], name: str) -> np.ndarray:
  # t5x kernels are [in, out]; Hugging Face Linear weights are [out, in].
  return _f32(np.asarray(p[name]["kernel"]).T)


_ENCODER_SUBLAYERS = (("pre_attention_layer_norm", "attention", "SelfAttention"),
                      ("pre_mlp_layer_norm", "mlp", "DenseReluDense"))
_DECODER_SUBLAYERS = (
    ("pre_self_attention_layer_norm", "self_attention", "SelfAttention"),
    ("pre_cross_attention_layer_norm", "encoder_decoder_attention",
     "EncDecAttention"),
    ("pre_mlp_layer_norm", "mlp", "DenseReluDense"))
_ATTENTION = (("query", "q"), ("key", "k"), ("value", "v"), ("out", "o"))


def _stack_tensors(out: dict[str, np.ndarray], stack: str,
                   p: Mapping[str, Any], num_layers: int,
                   sublayers: Sequence[tuple[str, str, str]]) -> None:
  """Adds one stack's tensors (`encoder` or `decoder`) to `out`."""
  # One relative-position table per stack, held by block 0 in Hugging Face.
  out[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (
      _f32(np.asarray(p["relpos_bias"]["rel_embedding"]).T))
  for i in range(num_layers):
    layer = p[f"layers_{i}"]
    for j, (norm, block, hf_block) in enumerate(sublayers):
      prefix = f"{stack}.block.{i}.layer.{j}"
      out[f"{prefix}.layer_norm.weight"] = _f32(layer[norm]["scale"])
      if hf_block == "DenseReluDense":  # wi | wi_0, wi_1; wo
        for name in sorted(layer[block]):
          out[f"{prefix}.{hf_block}.{name}.weight"] = _kernel(layer[block], name)
      else:
        for t5x_name, hf_name in _ATTENTION:
          out[f"{prefix}.{hf_block}.{hf_name}.weight"] = _kernel(layer[block],
                                                                 t5x_name)
  out[f"{stack}.final_layer_norm.weight"] = _f32(p[f"{stack}_norm"]["scale"])


def t5_tensors(cfg: Any, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Hugging Face T5 tensors of the t5x parameter tree (`hf_import`'s inverse).

  The embedding is written once (`shared.weight`; transformers ties the
  encoder's and decoder's copies to it); `lm_head.weight` only for an untied
  output layer (`logits_dense`).

  Raises:
    ExportError: a parameter is missing.
  """
  try:
    out = {"shared.weight": _f32(params["token_embedder"]["embedding"])}
    _stack_tensors(out, "encoder", params["encoder"], cfg.num_encoder_layers,
                   _ENCODER_SUBLAYERS)
    _stack_tensors(out, "decoder", params["decoder"], cfg.num_decoder_layers,
                   _DECODER_SUBLAYERS)
  except KeyError as e:
    raise ExportError(f"params: '{e.args[0]}' missing for a T5 network with "
                      f"this config") from e
  head = params["decoder"].get("logits_dense")
  if cfg.logits_via_embedding and head is not None:
    raise ExportError("params: 'decoder/logits_dense' present but the network "
                      "config ties the output layer (logits_via_embedding)")
  if not cfg.logits_via_embedding:
    if head is None:
      raise ExportError("params: 'decoder/logits_dense' missing (the network "
                        "config has logits_via_embedding = False)")
    out["lm_head.weight"] = _kernel(params["decoder"], "logits_dense")
  return out


def export_t5(cfg: Any, params: Mapping[str, Any], vocabulary: Any) -> HfModel:
  """The T5 / CodeT5 family's exporter (`FAMILIES`)."""
  config = t5_config(cfg, vocabulary)
  generation = {"decoder_start_token_id": DECODER_START_ID,
                "eos_token_id": config["eos_token_id"],
                "pad_token_id": vocab_lib.PAD_ID}
  return HfModel(config=config, tensors=t5_tensors(cfg, params),
                 generation=generation,
                 description="T5 encoder-decoder (T5ForConditionalGeneration)")


@dataclasses.dataclass(frozen=True)
class Family:
  """How one model family leaves t5x, and how it comes back (the check).

  Attributes:
    export: (network config, params, vocabulary) -> `HfModel`.
    import_params: (config.json object, tensors, vocabulary) -> the t5x
      parameter tree; the family's importer, run on every export
      (`_check_round_trip`).
  """

  export: Callable[[Any, Mapping[str, Any], Any], HfModel]
  import_params: Callable[[Mapping[str, Any], Mapping[str, np.ndarray], Any],
                          dict[str, Any]]


def _import_t5(config: Mapping[str, Any], tensors: Mapping[str, np.ndarray],
               vocabulary: Any) -> dict[str, Any]:
  del vocabulary  # T5 rows are in the vocabulary's own order.
  return hf_import.convert_params(config, tensors)


def export_decoder(cfg: Any, params: Mapping[str, Any],
                   vocabulary: Any) -> HfModel:
  """The decoder-only family's exporter (`hf_export_decoder`)."""
  try:
    config, tensors, generation = hf_export_decoder.export(cfg, params,
                                                           vocabulary)
  except hf_import.ConversionError as e:
    raise ExportError(str(e)) from e
  name = config["architectures"][0]
  return HfModel(config=config, tensors=tensors, generation=generation,
                 description=f"{config['model_type']} decoder-only ({name})")


T5_FAMILY = Family(export=export_t5, import_params=_import_t5)
DECODER_FAMILY = Family(export=export_decoder,
                        import_params=hf_export_decoder.import_params)
# Network config type -> its family.
FAMILIES: dict[type, Family] = {
    pad_network.T5Config: T5_FAMILY,
    t5x_network.T5Config: T5_FAMILY,
    decoder_network.DecoderConfig: DECODER_FAMILY,
}


def family_for(model: Any, source: str = "model") -> Family:
  """The family of a t5x model's network.

  Raises:
    ExportError: no exporter for this network (naming its config type).
  """
  cfg = getattr(getattr(model, "module", None), "config", None)
  family = FAMILIES.get(type(cfg))
  if family is None:
    known = sorted(f"{t.__module__}.{t.__name__}" for t in FAMILIES)
    raise ExportError(
        f"{source}: MODEL's network config is {type(cfg).__module__}."
        f"{type(cfg).__name__}; Hugging Face export supports {known}")
  return family


def _check_round_trip(family: Family, hf: HfModel, params: Mapping[str, Any],
                      vocabulary: Any = None) -> None:
  """Imports the export back; every parameter must be bit-identical."""
  back = flax.traverse_util.flatten_dict(
      family.import_params(hf.config, hf.tensors, vocabulary))
  want = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
  for key in sorted(set(back) | set(want)):
    name = "/".join(key)
    if key not in back:
      raise ExportError(f"params: '{name}' is not exported")
    if key not in want:
      raise ExportError(f"params: '{name}' appears after re-import only")
    if not np.array_equal(back[key], np.asarray(want[key], np.float32)):
      raise ExportError(f"params: '{name}' does not survive the round trip")


# ------------------------------------------------------------------------------
# Tokenizer files.
# ------------------------------------------------------------------------------
_SPECIAL = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>",
            "unk_token": "<unk>", "mask_token": "<mask>", "cls_token": "<s>",
            "sep_token": "</s>"}


def hf_tokenizer(vocabulary: vocab_lib.CodeT5Vocabulary,
                 decoder_only: bool = False) -> tokenizers.Tokenizer:
  """The vocabulary's own `tokenizers` pipeline, plus `<s> text </s>`.

  The pre-tokenizer, model, added tokens and decoder are the seqio
  vocabulary's (so the ids are its ids, digit splitting included); the
  post-processor adds what `vocab.format_input` adds, or for a decoder-only
  student `<s> text` (its prompt starts with the start token and has no EOS,
  `decoder_vocabulary`).
  """
  tokenizer = tokenizers.Tokenizer.from_str(vocabulary.tokenizer.to_str())
  if decoder_only:
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B",
        special_tokens=[("<s>", vocab_lib.BOS_ID)])
  else:
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", vocab_lib.EOS_ID), ("<s>", vocab_lib.BOS_ID),  # sep, cls
        trim_offsets=True, add_prefix_space=False)
  return tokenizer


def tokenizer_files(vocabulary: Any, decoder_only: bool = False
                    ) -> tuple[dict[str, Any], str]:
  """The tokenizer files of a seqio vocabulary, and their description.

  Args:
    vocabulary: the model's seqio vocabulary.
    decoder_only: for a decoder-only student: a `CodeT5Vocabulary` becomes a
      tokenizer that starts prompts with `<s>` and pads with EOS (see
      `decoder_vocabulary`).

  Returns:
    (file name -> text or JSON object, a one-line description). Empty for a
    vocabulary without a Hugging Face form (`CodeT5Vocabulary` and
    `HFTokenizerVocabulary` have one).
  """
  if isinstance(vocabulary, hf_tokenizer_vocab.HFTokenizerVocabulary):
    return hf_export_decoder.tokenizer_files(vocabulary)
  if not isinstance(vocabulary, vocab_lib.CodeT5Vocabulary):
    return {}, (f"not exported: {type(vocabulary).__name__} has no Hugging "
                "Face tokenizer form here")
  # RoBERTa's byte-level BPE is CodeT5's own tokenizer class; digit splitting
  # (the demo vocabulary) and a decoder-only prompt exist only in
  # tokenizer.json, which PreTrainedTokenizerFast reads as is.
  cls = ("PreTrainedTokenizerFast" if vocabulary.split_digits or decoder_only
         else "RobertaTokenizer")
  special = dict(_SPECIAL, additional_special_tokens=vocabulary.sentinels)
  if decoder_only:
    special["pad_token"] = special["eos_token"]
  vocab_dir = pathlib.Path(vocabulary.vocab_dir)
  tokenizer = hf_tokenizer(vocabulary, decoder_only)
  files = {"tokenizer.json": tokenizer.to_str(pretty=True),
           "tokenizer_config.json": dict(special, tokenizer_class=cls,
                                         add_prefix_space=False,
                                         errors="replace"),
           "special_tokens_map.json": special}
  # Also a pad-jax vocabulary directory: `CodeT5Vocabulary(HF_DIR)`.
  for name in ("vocab.json", "merges.txt", vocab_lib.CONFIG_FILE):
    if (vocab_dir / name).is_file():
      files[name] = (vocab_dir / name).read_text(encoding="utf-8")
  digits = ", digits split" if vocabulary.split_digits else ""
  return files, (f"{cls} (byte-level BPE, {vocabulary.vocab_size} ids"
                 f"{digits}; from {vocab_dir})")


def decoder_vocabulary(vocabulary: Any, tokenizer: Mapping[str, Any],
                       directory: str) -> Any:
  """The `HFTokenizerVocabulary` a decoder-only student is exported with.

  A decoder-only prompt starts with seqio id 0 (t5x's decoder start,
  `pad_jax.decoding.decoder.Decoder.batch`). An `HFTokenizerVocabulary`
  already knows which Hugging Face id that is (`pad_hf_id`). A
  `CodeT5Vocabulary` (the demo's) has none: its id 0 is `<pad>`. Its
  decoder-only tokenizer files (`tokenizer_files(..., decoder_only=True)`:
  `<s>` starts every text, EOS pads) are written into `directory`, and the
  `HFTokenizerVocabulary` over them swaps seqio id 0 with `<s>` (its BOS; its
  pad is EOS), as it does for Llama's `<s>`: the exported model's `<s>` row
  is the trained start row, and `AutoTokenizer(question + "\\n")` gives the
  prompt pad-jax decodes from. Text ids are unchanged, except in a text that
  spells out `<s>` or `<pad>` (pad-jax reads them as its own rows, the
  export as the swapped ones; `HFTokenizerVocabulary` refuses such text).

  Raises:
    ExportError: the written tokenizer does not encode as `vocabulary`.
  """
  if not isinstance(vocabulary, vocab_lib.CodeT5Vocabulary):
    return vocabulary
  _write_files(pathlib.Path(directory), tokenizer)
  hf_vocabulary = hf_tokenizer_vocab.HFTokenizerVocabulary(directory)
  probe = "def solution():\n    return 12 * 3.5  # <unk>"
  if (hf_vocabulary.vocab_size != vocabulary.vocab_size or
      hf_vocabulary.encode(probe) != vocabulary.encode(probe) or
      hf_vocabulary.pad_hf_id != vocab_lib.BOS_ID):
    raise ExportError(f"vocabulary: {vocabulary.vocab_dir} does not become a "
                      "decoder-only Hugging Face tokenizer with the same ids")
  return hf_vocabulary


# ------------------------------------------------------------------------------
# Reading the checkpoint and writing the directory.
# ------------------------------------------------------------------------------
def load_model(gin_files: Sequence[str], vocab_dir: Optional[str] = None
               ) -> tuple[Any, Any]:
  """(t5x model, vocabulary) of model gin files; `vocab_dir` overrides it.

  Raises:
    ExportError: a gin file does not parse, or the input and output
      vocabularies differ.
  """
  try:
    model = model_gin.load_model_from_gin(gin_files, with_optimizer=False)
  except ValueError as e:
    lines = str(e).strip().splitlines() or [type(e).__name__]
    raise ExportError(f"{list(gin_files)}: {lines[0]}") from e
  vocabulary = getattr(model, "output_vocabulary", None)
  if vocab_dir:
    vocabulary = vocab_lib.CodeT5Vocabulary(
        vocab_dir, extra_ids=getattr(vocabulary, "extra_ids", 0))
  elif getattr(model, "input_vocabulary", None) != vocabulary:
    raise ExportError(f"{list(gin_files)}: the input and output vocabularies "
                      "differ; a Hugging Face model has one tokenizer")
  return model, vocabulary


def restore_params(model: Any, checkpoint: str) -> dict[str, Any]:
  """The parameters of a t5x checkpoint, restored as `t5x.infer` does."""
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  partitioner = partitioning.PjitPartitioner(num_partitions=1)
  initializer = utils.TrainStateInitializer(
      optimizer_def=None, init_fn=model.get_initial_variables,
      input_shapes=shapes, input_types={k: jnp.int32 for k in shapes},
      partitioner=partitioner)
  restore = utils.RestoreCheckpointConfig(path=checkpoint, mode="specific",
                                          strict=False)
  state, _ = utils.create_checkpoint_manager_and_restore(
      initializer, partitioner, restore, checkpoint, None, use_orbax=True)
  if state is None:
    raise ExportError(f"{checkpoint}: could not be restored")
  return flax.core.unfreeze(state.params)


def _write_files(directory: pathlib.Path, files: Mapping[str, Any]) -> None:
  """Writes name -> text (as is) or JSON object files into `directory`."""
  for name, content in files.items():
    if isinstance(content, str):
      atomic.write_text(directory / name, content)
    else:
      atomic.write_json(directory / name, content)


def _write_weights(path: pathlib.Path, tensors: Mapping[str, np.ndarray]) -> None:
  try:
    # Deferred on purpose, as in hf_import: only this command needs it.
    from safetensors import numpy as safetensors_numpy  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ExportError("safetensors is not installed (pip install "
                      "safetensors)") from e
  # pad_jax.atomic writes text only: the same temporary file and rename.
  tmp = path.with_name(f".{path.name}.tmp")
  try:
    safetensors_numpy.save_file(dict(tensors), str(tmp),
                                metadata={"format": "pt"})
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()


def export(checkpoint_dir: str, gin_files: Sequence[str], out_dir: str,
           command: str = "", vocab_dir: Optional[str] = None,
           max_new_tokens: Optional[int] = None) -> dict[str, Any]:
  """Writes the Hugging Face directory of a t5x checkpoint.

  Args:
    checkpoint_dir: a `checkpoint_<step>` directory or the model directory
      holding them (its latest).
    gin_files: the model gin file(s) (`decoding.decoder.model_gin_files`
      finds them next to a checkpoint).
    out_dir: the output directory (created; files in it are replaced).
    command: the command line, recorded in the model card.
    vocab_dir: a vocabulary directory overriding the model file's.
    max_new_tokens: for `generation_config.json`; default the pipeline run's
      decode length, else the training target length, when known.

  Returns:
    A summary: `out_dir`, `checkpoint`, `files`, `tensors`, `tokenizer`,
    `base_model`, `run_dir`.

  Raises:
    ExportError: the model's family has no exporter, its parameters cannot be
      exported exactly, or a gin file is bad.
    FileNotFoundError: no such checkpoint.
  """
  checkpoint = checkpoints.resolve_checkpoint(checkpoint_dir)
  if "://" not in checkpoint:  # Orbax takes absolute paths only
    checkpoint = os.path.abspath(checkpoint)
  model, vocabulary = load_model(gin_files, vocab_dir)
  family = family_for(model, source=", ".join(gin_files))
  cfg = model.module.config
  if vocabulary.vocab_size > cfg.vocab_size:
    raise ExportError(f"vocabulary: {vocabulary.vocab_size} ids, more than the "
                      f"network's vocab_size {cfg.vocab_size}")
  params = restore_params(model, checkpoint)
  decoder_only = family is DECODER_FAMILY
  tok_files, tok_text = tokenizer_files(vocabulary, decoder_only)
  with tempfile.TemporaryDirectory() as tmp:
    if decoder_only:
      vocabulary = decoder_vocabulary(vocabulary, tok_files, tmp)
    hf = family.export(cfg, params, vocabulary)
    _check_round_trip(family, hf, params, vocabulary)
    start = hf_export_decoder.start_id(vocabulary, hf.config) if (
        decoder_only) else None
  facts = hf_model_card.gather(
      checkpoint, gin_files, hf_config=hf.config, family=hf.description,
      tokenizer=tok_text, command=command,
      num_params=int(sum(v.size for v in hf.tensors.values())),
      start_id=start)
  generation = dict(hf.generation)
  max_new_tokens = max_new_tokens or facts.max_new_tokens
  if max_new_tokens:
    generation["max_new_tokens"] = int(max_new_tokens)

  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  _write_weights(out / WEIGHTS_FILE, hf.tensors)
  texts = {"config.json": hf.config, "generation_config.json": generation,
           **tok_files, "README.md": hf_model_card.render(facts)}
  _write_files(out, texts)
  return {"out_dir": str(out), "checkpoint": checkpoint,
          "files": sorted([WEIGHTS_FILE, *texts]), "tensors": len(hf.tensors),
          "tokenizer": tok_text, "base_model": facts.base_model,
          "run_dir": facts.run.run_dir if facts.run else None}
