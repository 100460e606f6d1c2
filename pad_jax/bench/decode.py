r"""Benchmark: t5x greedy decoding vs. transformers `generate`, same shape.

  python -m pad_jax.bench decode --output=benchmarks/decode.json

CodeT5-small shape (`--model=tiny` for a smoke test), random weights, fp32,
batch 8, inputs 128, 256 greedy steps (EOS is disabled on both sides so
every sequence really decodes 256 tokens):

* `pad`: `EncoderDecoderModel.predict_batch_with_aux` (t5x's
  `temperature_sample` with top-k 1, what `t5x.infer` and
  `python -m pad_jax.infer --decode=greedy` run), jit-compiled, over
  `pad_jax.network.Transformer` as the model files configure it (gathered
  embeddings, one relative-position row per step; cross-attention cache
  off, see `pad_jax/network.py`);
* `t5x`: the same over t5x's example network;
* `hf`: `T5ForConditionalGeneration.generate(do_sample=False, num_beams=1)`
  with its key/value cache, under `torch.inference_mode`.

Calls run in turn (`--repeats` rounds after one warm-up round), so load
changes on a shared CPU hit all alike; the report gives median seconds,
generated tokens/s, `speedup_vs_hf`, and `mfu` (model FLOPs of encoding +
cached decoding over the measured fp32 matmul peak). The greedy ids of `pad`
and `hf` are compared too (`greedy_ids_equal`).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from absl import flags
from absl import logging
import numpy as np

from pad_jax.bench import _t5

_OUTPUT = flags.DEFINE_string("output", "benchmarks/decode.json",
                              "Where to write the JSON report.")
_MODEL = flags.DEFINE_enum("model", "codet5_small", sorted(_t5.SHAPES),
                           "Model shape.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Sequences per call.")
_INPUTS = flags.DEFINE_integer("inputs_length", 128, "Encoder tokens.")
_STEPS = flags.DEFINE_integer("decode_length", 256, "Greedy steps (tokens).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per implementation.")
_IMPLS = flags.DEFINE_list("impls", ["pad", "t5x", "hf"],
                           "Implementations: pad, t5x, hf (baseline).")
_XLA_FLAGS = flags.DEFINE_string("xla_flags", None,
                                 "XLA_FLAGS for this run (before jax starts).")
NO_EOS = -1  # An id never produced: every sequence runs all steps.


def t5x_decode(module: Any, shape: _t5.Shape, inputs: np.ndarray,
               steps: int, params: Any = None) -> tuple[Callable[[], Any], Any]:
  """A jitted greedy `predict_batch_with_aux` closure; returns (fn, params)."""
  import functools  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import seqio  # pylint: disable=import-outside-toplevel
  from t5x import decoding  # pylint: disable=import-outside-toplevel
  from t5x import models  # pylint: disable=import-outside-toplevel

  vocab = seqio.PassThroughVocabulary(shape.vocab_size, eos_id=2)
  model = models.EncoderDecoderModel(
      module, vocab, vocab, optimizer_def=None,
      decode_fn=functools.partial(decoding.temperature_sample, topk=1))
  batch = {"encoder_input_tokens": inputs,
           "decoder_input_tokens": np.zeros((inputs.shape[0], steps), np.int32)}
  if params is None:
    params = model.get_initial_variables(
        jax.random.PRNGKey(0), {k: v.shape for k, v in batch.items()},
        {k: v.dtype for k, v in batch.items()})["params"]
  predict = jax.jit(lambda p, b: model.predict_batch_with_aux(
      p, b, decoder_params={"eos_id": NO_EOS})[0])
  out = {}

  def run():
    out["ids"] = np.asarray(jax.block_until_ready(predict(params, batch)))
    return out["ids"]

  return run, params


def hf_decode(shape: _t5.Shape, params: Any, inputs: np.ndarray,
              steps: int) -> Callable[[], Any]:
  """transformers greedy `generate` over the same weights (via convert_hf)."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  model = transformers.T5ForConditionalGeneration(
      _t5.hf_config(shape, 0.0)).eval()
  model.load_state_dict(_to_hf_state(shape, params, model.state_dict()))
  model.generation_config.eos_token_id = None
  model.generation_config.pad_token_id = 0
  ids = torch.from_numpy(inputs.astype(np.int64))
  mask = torch.ones_like(ids)

  def run():
    with torch.inference_mode():
      out = model.generate(input_ids=ids, attention_mask=mask,
                           max_new_tokens=steps, do_sample=False, num_beams=1)
    assert out.shape[1] == steps + 1, out.shape
    return out[:, 1:].numpy()

  return run


def _to_hf_state(shape: _t5.Shape, params: Any, like: dict) -> dict:
  """t5x params -> HF state dict, by inverting `convert_hf.convert_params`."""
  import torch  # pylint: disable=import-outside-toplevel
  from pad_jax import convert_hf  # pylint: disable=import-outside-toplevel
  import flax  # pylint: disable=import-outside-toplevel
  # Map placeholder HF tensors (their index as the value) through the
  # converter to learn where each HF tensor lands, then copy back.
  tied = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
          "lm_head.weight")
  names = sorted(n for n in like if n not in tied)
  probe = {n: np.full(tuple(like[n].shape), i, np.float32)
           for i, n in enumerate(names)}
  config = {"model_type": "t5", "vocab_size": shape.vocab_size,
            "d_model": shape.emb_dim, "d_kv": shape.head_dim,
            "d_ff": shape.mlp_dim, "num_heads": shape.num_heads,
            "num_layers": shape.num_encoder_layers,
            "num_decoder_layers": shape.num_decoder_layers,
            "feed_forward_proj": "relu"}
  mapped = flax.traverse_util.flatten_dict(
      convert_hf.convert_params(config, probe))
  ours = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
  state = {}
  for key, placeholder in mapped.items():
    name = names[int(placeholder.flat[0])]
    value = np.asarray(ours[key])
    # The converter transposes every [out, in] Linear weight (and the
    # relative-position table); the embedding and scales keep their layout.
    if name != "shared.weight":
      value = value.T
    state[name] = torch.from_numpy(np.ascontiguousarray(value))
  for name in like:  # Tied copies of the shared embedding.
    state.setdefault(name, state["shared.weight"])
  return state


def main(argv: list[str]) -> int:
  del argv
  if _XLA_FLAGS.value is not None:
    os.environ["XLA_FLAGS"] = _XLA_FLAGS.value
  _t5.set_thread_env()
  from pad_jax import network as pad_network  # pylint: disable=import-outside-toplevel
  from t5x.examples.t5 import network as t5x_network  # pylint: disable=import-outside-toplevel

  shape = _t5.SHAPES[_MODEL.value]
  if len(shape.mlp_activations) != 1 or not shape.logits_via_embedding:
    raise ValueError("the HF baseline mapping expects a v1.0 (ReLU, tied) shape")
  steps = _STEPS.value
  inputs = np.random.RandomState(0).randint(
      3, shape.vocab_size, (_BATCH.value, _INPUTS.value)).astype(np.int32)
  fns, params = {}, None
  for impl in _IMPLS.value:
    logging.info("building %s", impl)
    if impl == "pad":
      module = pad_network.Transformer(_t5.pad_config(shape, dropout_rate=0.0))
      fns[impl], params = t5x_decode(module, shape, inputs, steps, params)
    elif impl == "t5x":
      module = t5x_network.Transformer(_t5.t5x_config(shape, dropout_rate=0.0))
      fns[impl], params = t5x_decode(module, shape, inputs, steps, params)
    elif impl != "hf":
      raise ValueError(f"--impls: unknown {impl!r} (pad, t5x, hf)")
  if "hf" in _IMPLS.value:
    if params is None:
      raise ValueError("--impls: hf needs pad or t5x (it copies their weights)")
    fns["hf"] = hf_decode(shape, params, inputs, steps)
  warm = {name: fn() for name, fn in fns.items()}  # Compiles; checks ids.
  logging.info("timing %d calls each", _REPEATS.value)
  times = _t5.interleaved(fns, _REPEATS.value, probe=_t5.matmul_probe())
  peak = times.pop("peak_flops")
  flops = _t5.decode_flops(shape, _BATCH.value, _INPUTS.value, steps)
  tokens = _BATCH.value * steps
  report = {
      "benchmark": "decode", "model": _MODEL.value, "decode": "greedy",
      "batch_size": _BATCH.value, "inputs_length": _INPUTS.value,
      "decode_length": steps, "dtype": "float32", "repeats": _REPEATS.value,
      "tokens_per_call": tokens,
      "model_gflop_per_call": round(flops / 1e9, 2),
      "matmul_peak_gflops": round(peak / 1e9, 1),
      "machine": _t5.machine(),
  }
  for impl, t in times.items():
    seconds = t["median_s"]
    report[impl] = {"seconds_per_call": round(seconds, 4),
                    "min_seconds": round(t["min_s"], 4), "times_s": t["times_s"],
                    "tokens_per_s": round(tokens / seconds, 1),
                    "mfu": round(flops / seconds / peak, 4)}
  if "hf" in times:
    for impl in times:
      if impl != "hf":
        report[impl]["speedup_vs_hf"] = round(
            _t5.paired_speedup(times, "hf", impl), 3)
    for impl in times:
      if impl != "hf":
        report[impl]["greedy_ids_equal_hf"] = bool(
            np.array_equal(warm[impl], warm["hf"]))
  if "pad" in report:
    report["speedup_vs_hf"] = report["pad"].get("speedup_vs_hf")
    report["mfu"] = report["pad"]["mfu"]
  _t5.write_report(_OUTPUT.value, report)
  return 0
