r"""Benchmark: a t5x training step vs. transformers (torch) + AdamW, same shape.

  python -m pad_jax.bench train --output=benchmarks/train.json

CodeT5-small shape (`--model=tiny` for a smoke test), random weights, fp32,
batch 8, inputs 128, targets 256, dropout 0.1, AdamW (lr 1e-4, weight decay
0.01) on both sides:

* `pad`: t5x's training step (`trainer.train_with_lr`: loss with z-loss,
  gradients, optimizer update; partitioned and state-donated as
  `t5x.trainer.Trainer` does) of `pad_jax.student.models.EncoderDecoderModel`
  (fused output layer + cross-entropy) over `pad_jax.student.network.Transformer`,
  what the project's model files give `t5x.train`;
* `t5x`: the same step of t5x's `EncoderDecoderModel` over t5x's example
  network (`t5x.examples.t5.network`, one-hot embedding);
* `torch`: `T5ForConditionalGeneration(labels=...)`, `backward`,
  `torch.optim.AdamW.step`.

The implementations run interleaved, step by step (`--steps` rounds of
A B C after `--warmup` rounds), so a busy shared CPU slows all of them
alike; an fp32 matmul peak probe runs once per round. The report gives, per
implementation, the median seconds per step and their spread ((max - min)
/ median), tokens/s (batch x (inputs + targets)), `speedup_vs_torch` (the
median of same-round ratios), model FLOPs per step (3x the forward matmuls,
embedding excluded), XLA's own FLOP and byte counts of the compiled step,
and `mfu`: model FLOP/s over the measured peak; the load average at the
start (`machine.load_average_1m_at_start`). `profile_notes` say where the
time goes when the goal (1.2x torch) is missed.
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

_OUTPUT = flags.DEFINE_string("output", "benchmarks/train.json",
                              "Where to write the JSON report.")
_MODEL = flags.DEFINE_enum("model", "codet5_small",
                           sorted(_t5.SHAPES) + sorted(_decoder.SHAPES),
                           "Model shape: a T5 one, or a decoder-only one against "
                           "LlamaForCausalLM (sequences of inputs + targets tokens).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Examples per step.")
_INPUTS = flags.DEFINE_integer("inputs_length", 128, "Encoder tokens.")
_TARGETS = flags.DEFINE_integer("targets_length", 256, "Decoder tokens.")
_STEPS = flags.DEFINE_integer("steps", 8, "Timed rounds (one step per implementation each).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed rounds (after compile).")
_IMPLS = flags.DEFINE_list("impls", ["pad", "t5x", "torch"],
                           "Implementations: pad, t5x, torch (baseline).")
_XLA_FLAGS = flags.DEFINE_string("xla_flags", None,
                                 "XLA_FLAGS for this run (before jax starts).")

LEARNING_RATE = 1e-4
WEIGHT_DECAY = 0.01
DROPOUT = 0.1


def make_batch(shape: _t5.Shape, batch: int, inputs: int, targets: int,
               seed: int = 0) -> dict[str, np.ndarray]:
  """Random full-length (unpadded) token batch in t5x's feature layout."""
  rng = np.random.RandomState(seed)
  enc = rng.randint(3, shape.vocab_size, (batch, inputs)).astype(np.int32)
  tgt = rng.randint(3, shape.vocab_size, (batch, targets)).astype(np.int32)
  dec_in = np.concatenate([np.zeros((batch, 1), np.int32), tgt[:, :-1]], 1)
  return {"encoder_input_tokens": enc, "decoder_input_tokens": dec_in,
          "decoder_target_tokens": tgt,
          "decoder_loss_weights": np.ones_like(tgt, dtype=np.float32)}


def t5x_step(model_cls: Any, module: Any, vocab_size: int,
             batch: dict[str, np.ndarray]
             ) -> tuple[Callable[[], Any], dict[str, float]]:
  """A t5x train step closure (state carried across calls) and XLA's costs.

  `model_cls` is t5x's `EncoderDecoderModel` or pad-jax's subclass, or a
  callable with its arguments (`_decoder` builds a `DecoderOnlyModel`).

  Returns:
    (step, {"flops", "bytes accessed"} of the compiled step and its HLO
    text, "hlo_text", which `profile` names the traced ops by).
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import seqio  # pylint: disable=import-outside-toplevel
  from t5x import optimizers  # pylint: disable=import-outside-toplevel
  from t5x import partitioning  # pylint: disable=import-outside-toplevel
  from t5x import train_state as train_state_lib  # pylint: disable=import-outside-toplevel
  from t5x import trainer  # pylint: disable=import-outside-toplevel

  vocab = seqio.PassThroughVocabulary(vocab_size, eos_id=2)
  optimizer = optimizers.adamw(learning_rate=LEARNING_RATE,
                               weight_decay=WEIGHT_DECAY)
  model = model_cls(module, vocab, vocab, optimizer, z_loss=1e-4)
  shapes = {k: v.shape for k, v in batch.items()}
  types = {k: v.dtype for k, v in batch.items()}
  variables = model.get_initial_variables(jax.random.PRNGKey(0), shapes,
                                          types)
  state = train_state_lib.FlaxOptimTrainState.create(optimizer, variables)
  partitioner = partitioning.PjitPartitioner(num_partitions=1)
  axes = partitioner.get_mesh_axes(state)
  base_rng = jax.random.PRNGKey(1)

  def train_step(train_state, batch):
    return trainer.train_with_lr(
        train_state, batch, learning_rate=jnp.asarray(LEARNING_RATE),
        dropout_rng=jax.random.fold_in(base_rng, train_state.step),
        model=model, num_microbatches=None,
        data_partition_spec=partitioner.data_partition_spec)

  step = partitioner.partition(
      train_step, in_axis_resources=(axes, partitioner.data_partition_spec),
      out_axis_resources=(axes, None), donate_argnums=(0,))
  compiled = partitioner.compile(step, state, batch)
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  holder = {"state": state}

  def run():
    holder["state"], metrics = compiled(holder["state"], batch)
    jax.block_until_ready(metrics["loss"])

  cost = cost or {}
  xla = {k: float(cost.get(k, 0.0)) for k in ("flops", "bytes accessed")}
  return run, dict(xla, hlo_text=compiled.as_text())


def torch_step(shape: _t5.Shape,
               batch: dict[str, np.ndarray]) -> Callable[[], Any]:
  """transformers T5ForConditionalGeneration + torch AdamW, one step a call."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(
      _t5.hf_config(shape, DROPOUT)).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE,
                                weight_decay=WEIGHT_DECAY)
  inputs = torch.from_numpy(batch["encoder_input_tokens"].astype(np.int64))
  labels = torch.from_numpy(batch["decoder_target_tokens"].astype(np.int64))

  def run():
    loss = model(input_ids=inputs, attention_mask=torch.ones_like(inputs),
                 labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

  return run


def profile_notes(report: dict[str, Any], goal: float) -> list[str]:
  """What is left when `pad` misses `goal` x torch (from the step's profile)."""
  speedup = report.get("speedup_vs_torch")
  if speedup is None or speedup >= goal:
    return []
  pad = report.get("pad", {})
  return [
      f"goal {goal}x torch missed ({speedup}x).",
      f"XLA's cost analysis: {pad.get('xla_gflop_per_step')} GFLOP and "
      f"{pad.get('xla_gbytes_accessed_per_step')} GB accessed per step, the "
      "fused loss's loop body counted once (so below the model's "
      f"{report['model_gflop_per_step']} GFLOP, of which the output layer "
      "is a third).",
      "Done (pad_jax.student.models, pad_jax.student.network): the output layer and "
      "cross-entropy fused in 256-row chunks (no [8, 256, 32100] logits, "
      "one-hot, log-softmax or logits gradient); dense layers and the MLP "
      "as 2-D products (no transposed copies of the [tokens, mlp] "
      "gradients); accuracy without argmax's variadic reduction.",
      "Left, from an XLA:CPU trace of the step: matrix products (YNNPACK "
      "fusions) are ~80% of op time; the rest is small items: attention "
      "masks/biases broadcast per layer ([8, 8, 256, 256], <1%), q/k/v "
      "transposes for the batched attention products (~2%), dropout's "
      "random bits (~2%), the optimizer update (~2%). XLA:CPU flags tried "
      "(dots on Eigen instead of YNNPACK) were slower. docs/measured.md, "
      "'Student benchmarks: what the numbers say'.",
  ]


def t5_steps() -> tuple[dict, dict, dict]:
  """(steps, XLA costs, forward FLOPs) of the T5 implementations."""
  from pad_jax.student import models as pad_models  # pylint: disable=import-outside-toplevel
  from pad_jax.student import network as pad_network  # pylint: disable=import-outside-toplevel
  from t5x import models as t5x_models  # pylint: disable=import-outside-toplevel
  from t5x.examples.t5 import network as t5x_network  # pylint: disable=import-outside-toplevel

  shape = _t5.SHAPES[_MODEL.value]
  batch = make_batch(shape, _BATCH.value, _INPUTS.value, _TARGETS.value)
  steps, xla_cost = {}, {}
  for impl in _IMPLS.value:
    logging.info("building %s", impl)
    if impl == "pad":
      module = pad_network.Transformer(
          _t5.pad_config(shape, dropout_rate=DROPOUT))
      steps[impl], xla_cost[impl] = t5x_step(pad_models.EncoderDecoderModel,
                                             module, shape.vocab_size, batch)
    elif impl == "t5x":
      module = t5x_network.Transformer(
          _t5.t5x_config(shape, dropout_rate=DROPOUT))
      steps[impl], xla_cost[impl] = t5x_step(t5x_models.EncoderDecoderModel,
                                             module, shape.vocab_size, batch)
    elif impl == "torch":
      steps[impl] = torch_step(shape, batch)
    else:
      raise ValueError(f"--impls: unknown {impl!r} (pad, t5x, torch)")
  return steps, xla_cost, _t5.forward_flops(shape, _BATCH.value, _INPUTS.value,
                                           _TARGETS.value)


def decoder_steps() -> tuple[dict, dict, dict]:
  """(steps, XLA costs, forward FLOPs) of the decoder-only pad and torch."""
  name, length = _MODEL.value, _INPUTS.value + _TARGETS.value
  impls = _IMPLS.value if _IMPLS.present else ["pad", "torch"]
  if set(impls) - {"pad", "torch"}:
    raise ValueError(f"--impls: {impls}: the decoder-only models take pad, torch")
  batch = _decoder.make_batch(name, _BATCH.value, length)
  steps, xla_cost = {}, {}
  for impl in impls:
    logging.info("building %s", impl)
    if impl == "pad":
      steps[impl], xla_cost[impl] = _decoder.pad_train_step(name, batch, t5x_step)
    else:
      steps[impl] = _decoder.torch_train_step(name, batch, LEARNING_RATE, WEIGHT_DECAY)
  return steps, xla_cost, {"total": _decoder.forward_flops(name, _BATCH.value, length)}


def main(argv: list[str]) -> int:
  del argv
  if _XLA_FLAGS.value is not None:
    os.environ["XLA_FLAGS"] = _XLA_FLAGS.value
  _t5.set_thread_env()
  load = _t5.load_average()
  if _MODEL.value in _decoder.SHAPES:
    steps, xla_cost, flops = decoder_steps()
  else:
    steps, xla_cost, flops = t5_steps()
  model_flops = 3 * flops["total"]
  tokens = _BATCH.value * (_INPUTS.value + _TARGETS.value)
  _t5.interleaved(steps, _WARMUP.value)
  logging.info("timing %d rounds", _STEPS.value)
  times = _t5.interleaved(steps, _STEPS.value, probe=_t5.matmul_probe())
  peak = times.pop("peak_flops")
  report = {
      "benchmark": "train", "model": _MODEL.value,
      "batch_size": _BATCH.value, "inputs_length": _INPUTS.value,
      "targets_length": _TARGETS.value, "dtype": "float32",
      "steps": _STEPS.value, "tokens_per_step": tokens,
      "model_gflop_per_step": round(model_flops / 1e9, 1),
      "model_gflop_forward_parts": {k: round(v / 1e9, 1)
                                    for k, v in flops.items()},
      "matmul_peak_gflops": round(peak / 1e9, 1),
      "machine": _t5.machine(load),
  }
  for impl, t in times.items():
    report[impl] = _t5.timing_entry(t, "seconds_per_step", tokens,
                                    model_flops, peak)
    if impl in xla_cost:
      report[impl]["xla_gflop_per_step"] = round(
          xla_cost[impl]["flops"] / 1e9, 1)
      report[impl]["xla_gbytes_accessed_per_step"] = round(
          xla_cost[impl]["bytes accessed"] / 1e9, 2)
  if "torch" in times:
    for impl in times:
      if impl != "torch":
        report[impl]["speedup_vs_torch"] = round(
            _t5.paired_speedup(times, "torch", impl), 3)
  if "pad" in report and "speedup_vs_torch" in report["pad"]:
    report["speedup_vs_torch"] = report["pad"]["speedup_vs_torch"]
  if "pad" in report:
    report["mfu"] = report["pad"]["mfu"]
  if _MODEL.value in _t5.SHAPES:
    report["profile_notes"] = profile_notes(report, 1.2)
  else:  # No goal for the decoder-only shapes: the trace says where time goes.
    report["profile"] = profile.op_profile(steps["pad"], xla_cost["pad"]["hlo_text"])
    report["profile_notes"] = profile.notes(report["profile"])
  decoder_default = _MODEL.value in _decoder.SHAPES and not _OUTPUT.present
  _t5.write_report(f"benchmarks/train_{_MODEL.value}.json" if decoder_default
                   else _OUTPUT.value, report)
  return 0
