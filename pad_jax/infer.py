r"""Batch decoding of questions with a t5x checkpoint.

  python -m pad_jax.infer --checkpoint_dir=CKPT --input=IN.jsonl \
    --output=OUT.jsonl [--gin_file=models/codet5_small.gin] \
    [--vocab_dir=DIR] --decode=greedy|beam|sample [--beam_size=4] \
    [--num_decodes=K] [--temperature=T] [--top_k=N] --max_decode_length=256

Input rows need `id` (unique string or integer) and `question`; any other
field (e.g. `answer`) is copied to the output row. Either student family
decodes with the same flags, told apart by the model file's class: an
encoder-decoder student (t5x `EncoderDecoderModel`) reads the question as
Hugging Face's CodeT5 tokenizer encodes it (`<s> question </s>`,
`pad_jax.student.vocab.format_input`); a decoder-only student (t5x
`DecoderOnlyModel`) reads the prompt its program task trained on
(`tasks.decoder_tasks.prompt_text`: the question and a newline, no EOS)
and writes the program after it (`--decode=stepwise_beam` too, unless the
model attends bidirectionally over its prompt: exit 2 before decoding).
Both are decoded by the t5x model's `predict_batch_with_aux` (what `t5x.infer` runs) with the checkpoint restored
by t5x's checkpoint manager, as `t5x.infer` restores it.

Output rows add

* `prediction`: the best decode as text; `tokens`: its ids, without the
  decoder start token, up to and including the first EOS (all
  `max_decode_length` ids if none); `score`: its log-probability;
* for `--num_decodes=K` > 1: `predictions` (K texts, best first),
  `predictions_tokens` and `scores`. With `--decode=sample` these are K
  independent samples, the input of self-consistency voting (the score stage
  executes every program and majority-votes the values).

Decoding modes: `greedy` (argmax; K must be 1), `beam` (beam search of width
`--beam_size`, length penalty `--alpha`; K <= beam size returns the K best
beams), `sample` (temperature sampling, optionally top-k), `stepwise_beam`
(PaD's step-by-step verified decoding: one line at a time, `--beam_size`
partial programs x `--step_candidates` next lines, prefixes executed and
failing ones pruned, the rest ranked by the log-probability, mixed with a
`--step_verifier`'s score by `--step_verifier_weight`; rows add `steps` and
`complete`; docs/stepwise.md).

`--refine_rounds=R` (PaD's self-refinement, `pad_jax.decoding.refine_loop`): each
prediction is executed, and one that does not run or returns no number is
decoded again from the question, the program and the interpreter's feedback,
up to R times; rows add `rounds` (every attempt) and `prediction` is the last
one; `<output stem>.refine.json` / `.refine.md` report per round how many
were fixed and broken (docs/refinement.md).

The decoding flags are the fields of `pad_jax.decoding.settings.DecodeSettings`
(same names, same defaults; the pipeline's decode stage passes its settings
as these flags) and are checked before anything is read.

Rows are appended (fsync'd) per batch; rerunning the same command skips the
ids already in `--output` (resume, `pad_jax.jsonl`'s rule: a torn last line
is redone, a malformed line elsewhere is an error). Bad input (a malformed
input line, a bad flag) stops the run with exit status 2 and one line
`error: file:line: field 'f': message` or `error: --flag: message` (a
missing checkpoint or model file included; `pad_jax.cli`).

`--checkpoint_dir` is a `checkpoint_<step>` directory or a model directory
(its latest checkpoint). The model is defined by `--gin_file` (t5x-style,
looked up in `--gin_search_paths`, which always include `.` and the
project's `gin_configs/`); by default it comes from next to the checkpoint:
the `model.gin` that `python -m pad_jax.convert_hf` writes, else the
`config.gin` that `t5x.train` writes into its MODEL_DIR (the run's whole
operative config, from which `MODEL` is built).
"""

from __future__ import annotations

import dataclasses
import json
import sys

from absl import flags

from pad_jax import cli
from pad_jax import tf_devices
from pad_jax.decoding import files
from pad_jax.decoding import refine_loop
from pad_jax.decoding.settings import DECODE_MODES
from pad_jax.decoding.settings import DecodeSettings
from pad_jax.errors import ConfigError


def settings_from_flags(values: flags.FlagValues = flags.FLAGS) -> DecodeSettings:
  """The `DecodeSettings` of the parsed flags (one flag per field)."""
  return DecodeSettings(**{f.name: values[f.name].value
                           for f in dataclasses.fields(DecodeSettings)})


def main(argv: list[str]) -> int:
  tf_devices.hide_accelerators_from_tf()  # before the tokenizer or data touch TF
  cli.no_arguments(argv)
  values = flags.FLAGS
  cli.require(checkpoint_dir=values.checkpoint_dir, input=values.input,
              output=values.output)
  settings = settings_from_flags(values)
  settings.validate(prefix="--")  # the message names the flag
  try:
    summary = files.decode_file(
        settings, values.checkpoint_dir, values.input, values.output,
        gin_files=values.gin_file, gin_search_paths=values.gin_search_paths,
        gin_bindings=values.gin_bindings, vocab_dir=values.vocab_dir,
        resume=values.resume)
  except FileNotFoundError as e:  # a file the flags name (its path is in the message)
    raise ConfigError(str(e)) from e
  if "refine" in summary:
    print(refine_loop.table(summary["refine"]), file=sys.stderr)
  print(json.dumps(summary))
  return 0


def define_flags(values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command's flags on `values`; settings defaults from `DecodeSettings`."""
  d = DecodeSettings()
  flags.DEFINE_string(
      "checkpoint_dir", None, "A t5x checkpoint_<step> directory, or a model "
      "directory (its latest checkpoint).", flag_values=values)
  flags.DEFINE_multi_string(
      "gin_file", [], "Model gin file(s); default the model.gin next to the checkpoint, else "
      "the t5x config.gin of its model directory.", flag_values=values)
  flags.DEFINE_list(
      "gin_search_paths", [], "More gin search paths ('.' and the project's "
      "gin_configs/ are always searched).", flag_values=values)
  flags.DEFINE_multi_string(
      "gin_bindings", [], "Extra gin bindings, KEY=VALUE.", flag_values=values)
  flags.DEFINE_string(
      "vocab_dir", None, "Vocabulary directory (vocab.json + merges.txt) "
      "overriding the model file's.", flag_values=values)
  flags.DEFINE_string("input", None, "Input JSONL (id, question).", flag_values=values)
  flags.DEFINE_string("output", None, "Output JSONL (appended; resumable).",
                      flag_values=values)
  flags.DEFINE_bool("resume", True, "Skip ids already in --output "
                    "(--noresume: overwrite it).", flag_values=values)
  # DecodeSettings' fields, one flag each.
  flags.DEFINE_enum("decode", d.decode, list(DECODE_MODES), "Decoding strategy.",
                    flag_values=values)
  flags.DEFINE_integer(
      "num_decodes", d.num_decodes, "Decodes per question (K > 1: all K written).",
      flag_values=values)
  flags.DEFINE_integer(
      "beam_size", d.beam_size, "Beam width (--decode=beam; --decode=stepwise_beam: "
      "partial programs kept per question).", flag_values=values)
  flags.DEFINE_float("alpha", d.alpha, "Beam-search length penalty.", flag_values=values)
  flags.DEFINE_float(
      "temperature", d.temperature, "Sampling temperature (--decode=sample; "
      "--decode=stepwise_beam: of the step candidates).", flag_values=values)
  flags.DEFINE_integer("top_k", d.top_k, "Top-k sampling (0: off).", flag_values=values)
  flags.DEFINE_integer("max_decode_length", d.max_decode_length,
                       "Most tokens decoded per question.", flag_values=values)
  flags.DEFINE_integer(
      "max_input_length", d.max_input_length, "Inputs are truncated to this many tokens.",
      flag_values=values)
  flags.DEFINE_integer("batch_size", d.batch_size, "Questions per batch.",
                       flag_values=values)
  flags.DEFINE_integer("seed", d.seed, "Sampling seed.", flag_values=values)
  flags.DEFINE_integer(
      "step_candidates", d.step_candidates, "--decode=stepwise_beam: candidate next "
      "lines per partial program (the argmax line + K-1 samples at --temperature, "
      "--top_k).", flag_values=values)
  flags.DEFINE_string(
      "step_verifier", d.step_verifier, "--decode=stepwise_beam: a step verifier "
      "checkpoint (runs/step_verifier.gin) scoring the steps with the student's "
      "length-normalized log-probability (--step_verifier_weight); default the "
      "log-probability alone.", flag_values=values)
  flags.DEFINE_float(
      "step_verifier_weight", d.step_verifier_weight, "--step_verifier's weight w in a "
      "step's score: (1 - w) * the student's length-normalized log-probability + w * the "
      "verifier's log p('correct'); 0: log-probability only, 1: verifier only.",
      flag_values=values)
  flags.DEFINE_boolean(
      "step_grounding", d.step_grounding, "--decode=stepwise_beam: rank a step that states "
      "a given the question does not contain (e.g. `bought = 168` for 'buys 61 more') "
      "below every other candidate.", flag_values=values)
  flags.DEFINE_integer(
      "refine_rounds", d.refine_rounds, "Self-refinement: re-decode a program that fails "
      "when run, with its feedback, up to this many rounds (0: off).", flag_values=values)


# Flags are defined only when this module is the program (as in t5x), so that
# importing it as a library never clashes with another command's flags.
if __name__ == "__main__":
  define_flags()
  cli.run(main)
