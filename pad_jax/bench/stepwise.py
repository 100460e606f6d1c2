r"""Benchmark: step-wise verified beam search vs. greedy decoding, same student.

  python -m pad_jax.bench stepwise                 # benchmarks/stepwise.json
  python -m pad_jax.bench stepwise --checkpoint_dir=STUDENT_MODEL_DIR

The student must write multi-line programs that run, or the search has
nothing to verify: random weights write no lines (and every prefix is a
syntax error), so the ratio would measure one step. Without
`--checkpoint_dir` the benchmark trains the tests' tiny student
(models/tiny.gin, `python -m t5x.train`, `--train_steps` steps on 16
synthetic programs; cached in `--work_dir`) and decodes synthetic test
questions with it, over pad-jax's network as the CodeT5 students
(`pad_network_gin`); with `--checkpoint_dir` any trained student (e.g. a
demo's or CodeT5's) decodes the same questions.

Both sides decode the same `--questions` synthetic test questions in
batches of `--batch_size`, as `python -m pad_jax.infer` does:

* `greedy`: `decoding.Decoder.decode_batch` (t5x's `predict_batch_with_aux`,
  argmax);
* `stepwise`: `stepwise_search.StepwiseSearch` with B = `--beam_size`
  partial programs x K = `--step_candidates` candidate lines, the
  log-probability scorer and the sandbox executor (what
  `--decode=stepwise_beam` runs): lines decoded from a kept cache
  (`stepwise_decoder`), every candidate prefix executed.

After one untimed round each (compiles), `--repeats` interleaved rounds
(greedy, stepwise, greedy, ...); the sampler restarts from its seed every
round, so every round does the same work. The report gives seconds per
question of each (median over rounds), their ratio (the median of
same-round ratios; goal <= 6), where the step-wise time went (decoding,
execution, the rest), lines and decoder calls per question; whether
B = K = 1 step-wise writes greedy's ids (`ids_equal_greedy`: each of its
programs is the start of greedy's, and equal to it up to EOS when complete
unless a prefix was pruned); and the 1-minute load average at the start.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import time
from typing import Any, Callable

from absl import flags
from absl import logging

from pad_jax.bench import _t5

_OUTPUT = flags.DEFINE_string("output", "benchmarks/stepwise.json",
                              "Where to write the JSON report.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint_dir", None, "A trained student (model dir or checkpoint); "
    "default: train the tiny one (--model=tiny).")
_MODEL = flags.DEFINE_enum("model", "tiny", ["tiny"],
                           "The student trained when no --checkpoint_dir.")
_WORK_DIR = flags.DEFINE_string(
    "work_dir", "/tmp/pad_jax_bench_stepwise",
    "Where the trained tiny student is kept (reused when present).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 200,
                                    "Training steps of the tiny student.")
_QUESTIONS = flags.DEFINE_integer("questions", 8, "Synthetic test questions.")
_BATCH = flags.DEFINE_integer("batch_size", 4, "Questions per batch.")
_BEAM = flags.DEFINE_integer("beam_size", 4, "B: partial programs kept.")
_CANDIDATES = flags.DEFINE_integer("step_candidates", 4,
                                   "K: candidate lines per partial program.")
_MAX_DECODE = flags.DEFINE_integer("max_decode_length", 128,
                                   "The most ids of a program.")
_MAX_INPUT = flags.DEFINE_integer("max_input_length", 64,
                                  "The most ids of a question.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed rounds.")

REPO = pathlib.Path(__file__).resolve().parents[2]
GOAL = 6.0


def pad_network_gin(model_dir: pathlib.Path) -> str:
  """models/tiny.gin over pad-jax's network (same parameters), for decoding.

  models/tiny.gin trains t5x's example network, which projects the encoder
  output into keys/values at every decoding step (a few times a tiny
  decoder step's own work at 16 rows per question); the students the
  pipeline decodes (models/codet5_*.gin) run `pad_jax.student.network`,
  which restores the same checkpoint.
  """
  text = (REPO / "gin_configs" / "models" / "tiny.gin").read_text()
  swapped = text.replace("from t5x.examples.t5 import network",
                         "from pad_jax.student import network")
  if swapped == text:
    raise ValueError("models/tiny.gin: no t5x network import to swap")
  path = model_dir / "tiny_pad_network.gin"
  path.write_text(swapped)
  return str(path)


def tiny_student(work_dir: str, steps: int) -> str:
  """The tests' tiny student: models/tiny.gin trained by `t5x.train`."""
  from pad_jax import checkpoints  # pylint: disable=import-outside-toplevel
  from pad_jax.data import programs  # pylint: disable=import-outside-toplevel
  from pad_jax.data import synthetic  # pylint: disable=import-outside-toplevel
  model_dir = pathlib.Path(work_dir) / f"tiny_{steps}"
  try:
    return checkpoints.resolve_checkpoint(str(model_dir))
  except FileNotFoundError:
    pass
  model_dir.mkdir(parents=True, exist_ok=True)
  data = model_dir / "programs.jsonl"
  programs.write_programs(data, synthetic.generate("train", 16, seed=0))
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONPATH=os.pathsep.join([str(REPO),
                                         os.environ.get("PYTHONPATH", "")]))
  logging.info("training the tiny student (%d steps) into %s", steps,
               model_dir)
  subprocess.run([
      sys.executable, "-m", "t5x.train", "--gin_search_paths=gin_configs",
      "--gin_file=models/tiny.gin", "--gin_file=runs/pad_finetune.gin",
      "--gin.MIXTURE_OR_TASK_NAME=@program_task()",
      f"--gin.program_task.jsonl_path='{data}'",
      "--gin.program_task.name='pad_bench_stepwise'",
      f"--gin.MODEL_DIR='{model_dir}'", f"--gin.TRAIN_STEPS={steps}",
      f"--gin.EVAL_PERIOD={steps}", "--gin.EVAL_STEPS=1",
      "--gin.EVALUATOR_NUM_EXAMPLES=2", "--gin.LEARNING_RATE=3e-3",
      "--gin.WARMUP_STEPS=10",
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 128}"],
      cwd=REPO, env=env, check=True, capture_output=True)
  return checkpoints.resolve_checkpoint(str(model_dir))


class _Clock:
  """Seconds spent in, and calls of, what `_timed` wraps."""

  def __init__(self):
    self.seconds, self.calls = 0.0, 0

  def reset(self):
    self.seconds, self.calls = 0.0, 0


class _Timed:
  """`target` whose `method` is timed on `clock`; every other name as is."""

  def __init__(self, target: Any, method: str, clock: _Clock):
    self._target, self._method, self._clock = target, method, clock

  def __getattr__(self, name: str) -> Any:
    attr = getattr(self._target, name)
    if name != self._method:
      return attr

    def timed(*args, **kwargs):
      start = time.perf_counter()
      try:
        return attr(*args, **kwargs)
      finally:
        self._clock.seconds += time.perf_counter() - start
        self._clock.calls += 1
    return timed


class _TimedProposer:
  """A proposer whose sessions' line decoding (`propose`) is timed."""

  def __init__(self, proposer: Any, clock: _Clock):
    self.proposer, self.vocabulary, self._clock = (
        proposer, proposer.vocabulary, clock)

  def session(self, encoded, rows_per_question):
    return _Timed(self.proposer.session(encoded, rows_per_question),
                  "propose", self._clock)


def _batches(items: list[Any], size: int) -> list[list[Any]]:
  return [items[i:i + size] for i in range(0, len(items), size)]


def build(checkpoint: str, gin_files: list[str], questions: list[str],
          executor: Any) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
  """The greedy and step-wise runs over all questions, and their parts."""
  from pad_jax.decoding import decoder as decoder_lib  # pylint: disable=import-outside-toplevel
  from pad_jax.decoding import stepwise_proposer  # pylint: disable=import-outside-toplevel
  from pad_jax.decoding import stepwise_scorers  # pylint: disable=import-outside-toplevel
  from pad_jax.decoding import stepwise_search  # pylint: disable=import-outside-toplevel
  from pad_jax.decoding.settings import DecodeSettings  # pylint: disable=import-outside-toplevel

  settings = DecodeSettings(
      decode="stepwise_beam", beam_size=_BEAM.value,
      step_candidates=_CANDIDATES.value, max_decode_length=_MAX_DECODE.value,
      max_input_length=_MAX_INPUT.value, batch_size=_BATCH.value)
  decoder = decoder_lib.Decoder(checkpoint, gin_files, dataclasses.replace(
      settings, decode="greedy", beam_size=1))
  encoded = [decoder.encode(q) for q in questions]
  batches = _batches(list(range(len(questions))), _BATCH.value)

  def proposer():
    return stepwise_proposer.Proposer(
        decoder.model, decoder.params, decoder.vocabulary,
        max_decode_length=_MAX_DECODE.value, temperature=settings.temperature,
        top_k=settings.top_k, seed=settings.seed)

  clocks = {"decode": _Clock(), "execute": _Clock()}
  timed = _TimedProposer(proposer(), clocks["decode"])
  search = stepwise_search.StepwiseSearch(
      timed, _Timed(executor, "run", clocks["execute"]),
      stepwise_scorers.LogProbScorer(),
      beam_size=_BEAM.value, step_candidates=_CANDIDATES.value)
  one = stepwise_search.StepwiseSearch(
      proposer(), executor, stepwise_scorers.LogProbScorer(), beam_size=1,
      step_candidates=1)

  def greedy():
    return [r for b in batches
            for r in decoder.decode_batch([questions[i] for i in b])]

  def stepwise():
    timed.proposer.reset_rng()
    return [r for b in batches for r in search.search(
        [questions[i] for i in b], [encoded[i] for i in b])]

  def stepwise_one():
    return [r for b in batches for r in one.search(
        [questions[i] for i in b], [encoded[i] for i in b])]

  parts = {"decoder": decoder, "clocks": clocks,
           "stepwise_one": stepwise_one}
  return {"greedy": greedy, "stepwise": stepwise}, parts


def compare_with_greedy(greedy: list[dict[str, Any]],
                        stepwise: list[dict[str, Any]], eos: int
                        ) -> dict[str, Any]:
  """Whether B = K = 1 step-wise programs are greedy's ids (see the doc)."""
  prefix = equal = 0
  for g, s in zip(greedy, stepwise):
    ids = [t for t in g["tokens"] if t != eos]
    prefix += s["tokens"] == ids[:len(s["tokens"])]
    equal += s["complete"] and s["tokens"] == ids
  return {"ids_equal_greedy": prefix == len(greedy),
          "programs_starting_greedys": prefix,
          "complete_programs_equal_greedys": equal,
          "programs": len(greedy)}


def main(argv: list[str]) -> int:
  del argv
  _t5.set_thread_env()
  load = _t5.load_average()
  from pad_jax.data import synthetic  # pylint: disable=import-outside-toplevel
  from pad_jax.execution import limits as exec_limits  # pylint: disable=import-outside-toplevel
  gin_files = []
  checkpoint = _CHECKPOINT.value
  if not checkpoint:
    checkpoint = tiny_student(_WORK_DIR.value, _TRAIN_STEPS.value)
    gin_files = [pad_network_gin(pathlib.Path(checkpoint).parent)]
  questions = [r.question for r in
               synthetic.generate("test", _QUESTIONS.value, seed=0)]
  n = len(questions)
  with exec_limits.DEFAULT.executor() as executor:
    fns, parts = build(checkpoint, gin_files, questions, executor)
    warm = {name: fn() for name, fn in fns.items()}  # Compiles.
    one = parts["stepwise_one"]()
    for clock in parts["clocks"].values():
      clock.reset()
    logging.info("timing %d rounds", _REPEATS.value)
    times = _t5.interleaved(fns, _REPEATS.value)
  rounds = _REPEATS.value
  steps = [len(r["steps"]) for r in warm["stepwise"]]
  stepwise_s = times["stepwise"]["median_s"]
  clocks = parts["clocks"]
  decode_s = clocks["decode"].seconds / rounds
  execute_s = clocks["execute"].seconds / rounds
  report = {
      "benchmark": "stepwise",
      "model": "checkpoint" if _CHECKPOINT.value else _MODEL.value,
      "checkpoint": checkpoint, "gin_files": gin_files, "questions": n,
      "batch_size": _BATCH.value, "beam_size": _BEAM.value,
      "step_candidates": _CANDIDATES.value,
      "max_decode_length": _MAX_DECODE.value, "repeats": rounds,
      "greedy": _entry(times["greedy"], n),
      "stepwise": _entry(times["stepwise"], n),
      "ratio_stepwise_vs_greedy": round(
          _t5.paired_speedup(times, "stepwise", "greedy"), 3),
      "goal_ratio": GOAL,
      "stepwise_breakdown_s_per_question": {
          "decode_lines": round(decode_s / n, 4),
          "execute": round(execute_s / n, 4),
          "rest": round((stepwise_s - decode_s - execute_s) / n, 4)},
      "lines_per_question": round(sum(steps) / n, 2),
      "decode_calls_per_round": clocks["decode"].calls // rounds,
      "complete": sum(r["complete"] for r in warm["stepwise"]),
      "greedy_ids_per_question": round(
          sum(len(r["tokens"]) for r in warm["greedy"]) / n, 1),
      **compare_with_greedy(warm["greedy"], one,
                            parts["decoder"].vocabulary.eos_id),
      "machine": _t5.machine(load),
      "notes": [
          "Same student, same questions, same batches for both sides; "
          "seconds per question are medians over interleaved rounds.",
          "The student is trained (random weights write no program lines, "
          "so the search would stop after one step): the ratio covers real "
          "multi-line programs, their execution in the sandbox and the "
          "scorer, as --decode=stepwise_beam runs them.",
          "The tiny student is models/tiny.gin (trained with t5x's "
          "network) decoded by pad-jax's network (same parameters; "
          "gin_files), as the CodeT5 students are.",
          "With the tiny student a decoding step is cheap, so the fixed "
          "costs per step (sandbox call, host bookkeeping, one jitted "
          "call per line) weigh more than with CodeT5; "
          "stepwise_breakdown_s_per_question says where the time went.",
      ],
  }
  _t5.write_report(_OUTPUT.value, report)
  return 0


def _entry(t: dict[str, Any], questions: int) -> dict[str, Any]:
  return {"seconds_per_question": round(t["median_s"] / questions, 4),
          "seconds_per_round": round(t["median_s"], 4),
          "spread": round((t["max_s"] - t["min_s"]) / t["median_s"], 3),
          "times_s": t["times_s"]}
