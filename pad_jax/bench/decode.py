r"""Benchmark: t5x decoding (greedy or beam) vs. transformers `generate`, same shape.

  python -m pad_jax.bench decode                                # benchmarks/decode.json
  python -m pad_jax.bench decode --decode=beam --beam_size=4    # benchmarks/decode_beam.json

CodeT5-small shape (`--model=tiny` for a smoke test), random weights, fp32,
batch 8, inputs 128, 256 decoding steps. EOS is disabled on both sides, so
every sequence (every beam) really decodes 256 tokens: both loops run the
same number of steps, and with all beams of equal length neither side's
length penalty (t5x's brevity penalty `alpha`, HF's `length_penalty`) nor
early stopping changes which beam wins, so the ids are comparable.

* `pad`: `pad_jax.student.models.EncoderDecoderModel.predict_batch_with_aux` over
  `pad_jax.student.network.Transformer`, as the project's model gin files configure
  them (what `t5x.infer` and `python -m pad_jax.infer` run): cross-attention
  keys/values projected once per input before the loop; greedy is t5x's
  `temperature_sample` at temperature 0 (argmax), beam is
  `pad_jax.decoding.beam_search.beam_search` (t5x's beam search; the self-attention
  cache stays in place and each beam reads it through its ancestors;
  `--beam_size` beams, all returned ids are the best beam's); on CPU its
  decoding steps run `pad_jax.student.kernels` (skinny matrix products and
  attention over the filled part of the cache; `cpu_kernels` in the report);
* `pad_jnp` (greedy default): the same, traced with the kernels off (XLA's
  own dots and attention), so the kernels' share shows in the same run;
* `t5x`: t5x's stock `models.EncoderDecoderModel` over t5x's example
  network (re-projects the encoder keys/values at every step; greedy only
  by default, as for 4 beams that takes minutes per call);
* `hf`: `T5ForConditionalGeneration.generate(do_sample=False,
  num_beams=1 | --beam_size)` with its key/value cache, under
  `torch.inference_mode`.

After one warm-up call each (compiles; its ids are compared), the calls run
interleaved, `--repeats` rounds of A B C, so load changes on a shared CPU
hit all alike; an fp32 matmul peak probe runs once per round. The report
gives, per implementation, the median seconds and their spread
(`spread`: (max - min) / median), generated tokens/s, `mfu` (model FLOPs
of encoding + cached decoding over the measured peak) and `speedup_vs_hf`
(the median of same-round ratios); `ids_equal_hf`; the load average at the
start (`machine.load_average_1m`). `profile_notes` say where the time goes
when a goal is missed.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from absl import flags
from absl import logging
import numpy as np

from pad_jax.bench import _decoder
from pad_jax.bench import _t5
from pad_jax.bench import profile

_OUTPUT = flags.DEFINE_string(
    "output", None, "Where to write the JSON report (default "
    "benchmarks/decode.json, with --decode=beam benchmarks/decode_beam.json).")
_MODEL = flags.DEFINE_enum("model", "codet5_small",
                           sorted(_t5.SHAPES) + sorted(_decoder.SHAPES),
                           "Model shape: a T5 one, or a decoder-only one against "
                           "LlamaForCausalLM (--inputs_length: the prompt).")
_DECODE = flags.DEFINE_enum("decode", "greedy", ["greedy", "beam"],
                            "Greedy decoding or beam search.")
_BEAM = flags.DEFINE_integer("beam_size", 4, "Beams (with --decode=beam).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Inputs per call.")
_INPUTS = flags.DEFINE_integer("inputs_length", 128, "Encoder tokens.")
_STEPS = flags.DEFINE_integer("decode_length", 256,
                              "Decoding steps (tokens per sequence).")
_REPEATS = flags.DEFINE_integer(
    "repeats", None, "Timed rounds (one call per implementation each); "
    "default 5 greedy, 2 beam (a 256-step beam-4 call takes ~0.5 min).")
_IMPLS = flags.DEFINE_list(
    "impls", None, "Implementations: pad, t5x, hf (baseline); default "
    "pad,t5x,hf greedy and pad,hf beam (t5x's network re-projects the "
    "encoder keys/values for every beam at every step: minutes per call).")
_XLA_FLAGS = flags.DEFINE_string("xla_flags", None,
                                 "XLA_FLAGS for this run (before jax starts).")
NO_EOS = -1  # An id never produced: every sequence runs all steps.


def t5x_decode(model_cls: Any, module: Any, shape: _t5.Shape,
               inputs: np.ndarray, steps: int, beams: int,
               params: Any = None,
               beam_fn: Any = None) -> tuple[Callable[[], Any], Any]:
  """A jitted `predict_batch_with_aux` closure; returns (fn, params).

  Args:
    model_cls: t5x's `models.EncoderDecoderModel` or a subclass.
    module: the network.
    shape: the model shape.
    inputs: `[batch, inputs_length]` encoder tokens.
    steps: decoding steps.
    beams: 0 for greedy (`temperature_sample` at temperature 0), else
      beam search with that many beams.
    params: parameters to share (None: initialise from PRNGKey(0)).
    beam_fn: the beam search (None: t5x's `decoding.beam_search`).
  """
  import functools  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import seqio  # pylint: disable=import-outside-toplevel
  from t5x import decoding  # pylint: disable=import-outside-toplevel

  vocab = seqio.PassThroughVocabulary(shape.vocab_size, eos_id=2)
  if beams:
    decode_fn, num_decodes = beam_fn or decoding.beam_search, beams
  else:
    # What pad_jax.infer runs for greedy: t5x's zero-temperature (argmax)
    # path; top-k 1 at temperature 1 gives the same ids but masks and
    # samples 8 x 32100 logits at every step (~1/3 of a step on CPU).
    decode_fn = functools.partial(decoding.temperature_sample, temperature=0.0)
    num_decodes = 1
  model = model_cls(module, vocab, vocab, optimizer_def=None,
                    decode_fn=decode_fn)
  batch = {"encoder_input_tokens": inputs,
           "decoder_input_tokens": np.zeros((inputs.shape[0], steps), np.int32)}
  if params is None:
    params = model.get_initial_variables(
        jax.random.PRNGKey(0), {k: v.shape for k, v in batch.items()},
        {k: v.dtype for k, v in batch.items()})["params"]
  predict = jax.jit(lambda p, b: model.predict_batch_with_aux(
      p, b, decoder_params={"eos_id": NO_EOS}, num_decodes=num_decodes)[0])

  def run():
    return np.asarray(jax.block_until_ready(predict(params, batch)))

  return run, params


def hf_decode(shape: _t5.Shape, params: Any, inputs: np.ndarray,
              steps: int, beams: int) -> Callable[[], Any]:
  """transformers `generate` over the same weights (via convert_hf).

  Greedy (`beams=0`) or `num_beams=beams` beam search returning the best
  beam. EOS is off, so no beam ends early and `length_penalty` /
  `early_stopping` cannot change the result (all beams have equal length).
  """
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
                           max_new_tokens=steps,
                           do_sample=False, num_beams=max(beams, 1))
    assert out.shape[1] == steps + 1, out.shape
    return out[:, 1:].numpy()

  return run


def _to_hf_state(shape: _t5.Shape, params: Any, like: dict) -> dict:
  """t5x params -> HF state dict, by inverting `convert_hf.convert_params`."""
  import torch  # pylint: disable=import-outside-toplevel
  from pad_jax.student import hf_import as convert_hf  # pylint: disable=import-outside-toplevel
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


def _traced_without_kernels(run: Callable[[], Any]) -> Callable[[], Any]:
  """`run` whose first call (the trace) uses the jnp code, not the kernels."""
  from pad_jax.student import kernels  # pylint: disable=import-outside-toplevel
  traced = []

  def call():
    if traced:
      return run()
    with kernels.disabled():
      out = run()
    traced.append(True)
    return out

  return call


def build(impls: list[str], shape: _t5.Shape, inputs: np.ndarray, steps: int,
          beams: int) -> dict[str, Callable[[], Any]]:
  """One decoding closure per implementation, all over the same weights."""
  from pad_jax.decoding import beam_search as pad_beam_search  # pylint: disable=import-outside-toplevel
  from pad_jax.student import models as pad_models  # pylint: disable=import-outside-toplevel
  from pad_jax.student import network as pad_network  # pylint: disable=import-outside-toplevel
  from t5x import models as t5x_models  # pylint: disable=import-outside-toplevel
  from t5x.examples.t5 import network as t5x_network  # pylint: disable=import-outside-toplevel

  fns, params = {}, None
  for impl in impls:
    logging.info("building %s", impl)
    if impl in ("pad", "pad_jnp"):
      module = pad_network.Transformer(_t5.pad_config(shape, dropout_rate=0.0))
      fns[impl], params = t5x_decode(pad_models.EncoderDecoderModel, module,
                                     shape, inputs, steps, beams, params,
                                     beam_fn=pad_beam_search.beam_search)
      if impl == "pad_jnp":
        fns[impl] = _traced_without_kernels(fns[impl])
    elif impl == "t5x":
      module = t5x_network.Transformer(_t5.t5x_config(shape, dropout_rate=0.0))
      fns[impl], params = t5x_decode(t5x_models.EncoderDecoderModel, module,
                                     shape, inputs, steps, beams, params)
    elif impl != "hf":
      raise ValueError(f"--impls: unknown {impl!r} (pad, pad_jnp, t5x, hf)")
  if "hf" in impls:
    if params is None:
      raise ValueError("--impls: hf needs pad or t5x (it copies their weights)")
    fns["hf"] = hf_decode(shape, params, inputs, steps, beams)
  return fns


def decode_bytes_per_step(shape: _t5.Shape, batch: int, inputs: int,
                          steps: int, beams: int,
                          filled_only: bool) -> dict[str, int]:
  """Bytes one cached decoding step reads (f32), on average over a call.

  The decoder's weights (the cross-attention key/value projections are not
  read: `pad_jax.student.models` projects the encoder once), the tied output
  embedding, the self-attention cache (`batch * beams` rows) and the encoder
  keys/values (`batch` rows, shared by the beams). The self-attention cache
  has the full decode length; `filled_only` (the CPU attention kernel,
  `pad_jax.student.kernels`) reads the positions written so far, (steps + 1) / 2 on
  average, else every step reads all of them. Beam search moves its cache
  on top of this.
  """
  d, inner = shape.emb_dim, shape.num_heads * shape.head_dim
  layers = shape.num_decoder_layers
  weights = layers * (6 * d * inner + 2 * d * shape.mlp_dim) * 4
  embedding = shape.vocab_size * d * 4
  positions = (steps + 1) / 2 if filled_only else steps
  self_cache = int(layers * 2 * batch * max(beams, 1) * positions * inner * 4)
  cross_kv = layers * 2 * batch * inputs * inner * 4
  return {"decoder_weights": weights, "output_embedding": embedding,
          "self_attention_cache": self_cache, "encoder_keys_values": cross_kv,
          "total": weights + embedding + self_cache + cross_kv}


def bandwidth_floor(report: dict[str, Any], shape: _t5.Shape,
                    bandwidth: dict[str, float],
                    kernels: bool) -> dict[str, Any]:
  """The least time per call at the rate memory is read here, and pad's rate.

  `bandwidth`: `_t5.bandwidth_probe`'s bytes/s (`sum`: a plain reduction,
  what the memory system streams; `matvec`: XLA:CPU's 8-row dot, for
  comparison). `kernels`: pad ran with `pad_jax.student.kernels` (greedy reads only
  the filled part of the self-attention cache).
  """
  steps = report["decode_length"]
  per_step = decode_bytes_per_step(
      shape, report["batch_size"], report["inputs_length"], steps,
      report["beam_size"], filled_only=kernels and not report["beam_size"])
  floor_s = per_step["total"] * steps / bandwidth["sum"]
  floor = {"bytes_per_step_mb": {k: round(v / 1e6, 1) for k, v in per_step.items()},
           "sum_bandwidth_gbs": round(bandwidth["sum"] / 1e9, 2),
           "xla_matvec_gbs": round(bandwidth["matvec"] / 1e9, 2),
           "floor_seconds_per_call": round(floor_s, 4)}
  if "pad" in report:
    seconds = report["pad"]["seconds_per_call"]
    floor["pad_read_gbs"] = round(per_step["total"] * steps / seconds / 1e9, 2)
    floor["pad_of_floor"] = round(floor_s / seconds, 3)
  if "hf" in report:
    floor["floor_speedup_vs_hf"] = round(
        report["hf"]["seconds_per_call"] / floor_s, 2)
  return floor


def profile_notes(report: dict[str, Any], goal: float) -> list[str]:
  """What is left when `pad` misses `goal` x HF (from the cost analysis)."""
  speedup = report.get("speedup_vs_hf")
  if speedup is None or speedup >= goal:
    return []
  floor = report.get("memory_floor")
  mb = floor and floor["bytes_per_step_mb"]
  bound = [] if not floor or "floor_speedup_vs_hf" not in floor else [
      f"Memory floor: each step reads {mb['total']} MB (decoder weights "
      f"{mb['decoder_weights']}, output embedding {mb['output_embedding']}, "
      f"self-attention cache {mb['self_attention_cache']}, encoder keys/values "
      f"{mb['encoder_keys_values']}); at the {floor['sum_bandwidth_gbs']} GB/s "
      "a plain sum reads here that is at least "
      f"{floor['floor_seconds_per_call']} s per call, "
      f"{floor['floor_speedup_vs_hf']}x HF; pad reads "
      f"{floor.get('pad_read_gbs')} GB/s ({floor.get('pad_of_floor')} of the "
      f"floor's speed; XLA:CPU's own 8-row dot reads {floor['xla_matvec_gbs']} "
      "GB/s)."]
  return [
      f"goal {goal}x HF missed ({speedup}x).",
  ] + bound + [
      "Per step, the decoder is matrix-vector work at batch "
      f"{report['batch_size'] * max(report['beam_size'], 1)}: ~0.6 GFLOP "
      "per 8 rows against all the decoder weights and the output embedding "
      "read, so its time goes to reading memory, not to FLOPs (low `mfu` "
      "is expected); docs/measured.md, "
      "'Student benchmarks: what the numbers say'.",
  ] + ([
      "beam search (pad_jax.decoding.beam_search): the self-attention cache (12 "
      "arrays of [batch*beams, 8, 256, 64], 16.8 MB each at batch 8 x 4 "
      "beams) is no longer moved (it was gathered and then copied by XLA "
      "at every step, ~0.4 GB written per step): each layer keeps a "
      "[batch, beams, 256] table of ancestors and the attention reads "
      "every beam's positions from its ancestors' rows "
      "(attention.ancestor_attention). What that costs: every key array is "
      "read once per beam (4 matrix-vector products per layer; one "
      "4-query product against the [.., 256, 64] key layout ran several "
      "times slower on XLA:CPU), values once. Left: a key cache stored "
      "transposed ([.., 64, 256]) makes it one product per layer (noisy "
      "A/B: ~9% less CPU time per beam step, ~8% more per greedy step, "
      "not adopted); attention reads all 256 positions at every step, "
      "filled or not; the output layer (32 x 512 x 32100, 1 GFLOP per "
      "step) and top-k over 8 x 128,400 log-probabilities.",
  ] if report["beam_size"] else [])


def main(argv: list[str]) -> int:
  del argv
  if _XLA_FLAGS.value is not None:
    os.environ["XLA_FLAGS"] = _XLA_FLAGS.value
  _t5.set_thread_env()
  load = _t5.load_average()
  if _MODEL.value in _decoder.SHAPES:
    return decoder_main(load)
  shape = _t5.SHAPES[_MODEL.value]
  if len(shape.mlp_activations) != 1 or not shape.logits_via_embedding:
    raise ValueError("the HF baseline mapping expects a v1.0 (ReLU, tied) shape")
  beams = _BEAM.value if _DECODE.value == "beam" else 0
  repeats = _REPEATS.value or (2 if beams else 5)
  output = _OUTPUT.value or ("benchmarks/decode_beam.json" if beams
                             else "benchmarks/decode.json")
  steps = _STEPS.value
  inputs = np.random.RandomState(0).randint(
      3, shape.vocab_size, (_BATCH.value, _INPUTS.value)).astype(np.int32)
  impls = _IMPLS.value or (["pad", "hf"] if beams else
                           ["pad", "pad_jnp", "t5x", "hf"])
  fns = build(impls, shape, inputs, steps, beams)
  warm = {name: fn() for name, fn in fns.items()}  # Compiles; checks ids.
  logging.info("timing %d rounds", repeats)
  probes = [_t5.bandwidth_probe()]
  times = _t5.interleaved(fns, repeats, probe=_t5.matmul_probe())
  peak = times.pop("peak_flops")
  probes.append(_t5.bandwidth_probe())
  bandwidth = {k: max(p[k] for p in probes) for k in probes[0]}
  flops = _t5.decode_flops(shape, _BATCH.value, _INPUTS.value, steps,
                           beams=max(beams, 1))
  tokens = _BATCH.value * max(beams, 1) * steps
  report = {
      "benchmark": "decode", "model": _MODEL.value, "decode": _DECODE.value,
      "beam_size": beams, "batch_size": _BATCH.value,
      "inputs_length": _INPUTS.value, "decode_length": steps,
      "dtype": "float32", "repeats": repeats,
      "tokens_per_call": tokens,
      "model_gflop_per_call": round(flops / 1e9, 2),
      "matmul_peak_gflops": round(peak / 1e9, 1),
      "machine": _t5.machine(load),
  }
  for impl, t in times.items():
    report[impl] = _t5.timing_entry(t, "seconds_per_call", tokens, flops, peak)
  if "hf" in times:
    for impl in times:
      if impl != "hf":
        report[impl]["speedup_vs_hf"] = round(
            _t5.paired_speedup(times, "hf", impl), 3)
        report[impl]["ids_equal_hf"] = bool(
            np.array_equal(warm[impl], warm["hf"]))
        report[impl]["ids_agreement_hf"] = round(
            float(np.mean(warm[impl] == warm["hf"])), 4)
  if "pad" in report:
    report["speedup_vs_hf"] = report["pad"].get("speedup_vs_hf")
    report["ids_equal_hf"] = report["pad"].get("ids_equal_hf")
    report["mfu"] = report["pad"]["mfu"]
  from pad_jax.student import kernels  # pylint: disable=import-outside-toplevel
  report["cpu_kernels"] = kernels.available()
  report["memory_floor"] = bandwidth_floor(report, shape, bandwidth,
                                           report["cpu_kernels"])
  report["profile_notes"] = profile_notes(report, 2.0 if beams else 3.0)
  _t5.write_report(output, report)
  return 0


def decoder_main(load: float) -> int:
  """Greedy decoding of a decoder-only model: pad (t5x) vs. LlamaForCausalLM."""
  if _DECODE.value != "greedy":
    raise ValueError("--decode: the decoder-only models are benchmarked greedy only")
  name, steps, repeats = _MODEL.value, _STEPS.value, _REPEATS.value or 5
  prompts = np.random.RandomState(0).randint(
      3, _decoder.SHAPES[name]["vocab_size"],
      (_BATCH.value, _INPUTS.value)).astype(np.int32)
  fns, hlo_text = _decoder.decode_fns(name, prompts, steps, _IMPLS.value or ["pad", "hf"])
  warm = {impl: fn() for impl, fn in fns.items()}  # Compiles; checks ids.
  logging.info("timing %d rounds", repeats)
  times = _t5.interleaved(fns, repeats, probe=_t5.matmul_probe())
  peak = times.pop("peak_flops")
  flops = _decoder.decode_flops(name, _BATCH.value, _INPUTS.value + 1, steps)
  tokens = _BATCH.value * steps
  report = {
      "benchmark": "decode", "model": name, "decode": "greedy", "beam_size": 0,
      "batch_size": _BATCH.value, "inputs_length": _INPUTS.value,
      "decode_length": steps, "dtype": "float32", "repeats": repeats,
      "tokens_per_call": tokens, "model_gflop_per_call": round(flops / 1e9, 2),
      "matmul_peak_gflops": round(peak / 1e9, 1), "machine": _t5.machine(load),
  }
  for impl, t in times.items():
    report[impl] = _t5.timing_entry(t, "seconds_per_call", tokens, flops, peak)
  if "hf" in times:
    report["pad"]["speedup_vs_hf"] = round(_t5.paired_speedup(times, "hf", "pad"), 3)
    report["pad"]["ids_equal_hf"] = bool(np.array_equal(warm["pad"], warm["hf"]))
    report["pad"]["ids_agreement_hf"] = round(float(np.mean(warm["pad"] == warm["hf"])), 4)
    report["speedup_vs_hf"] = report["pad"]["speedup_vs_hf"]
    report["ids_equal_hf"] = report["pad"]["ids_equal_hf"]
  report["mfu"] = report["pad"]["mfu"]
  # No goal for the decoder-only shapes: the trace says where the time goes.
  report["profile"] = profile.op_profile(fns["pad"], hlo_text)
  report["profile_notes"] = profile.notes(report["profile"])
  _t5.write_report(_OUTPUT.value or f"benchmarks/decode_{name}.json", report)
  return 0
