r"""Batch decoding of questions with a t5x checkpoint.

  python -m pad_jax.infer --checkpoint_dir=CKPT --input=IN.jsonl \
    --output=OUT.jsonl [--gin_file=models/codet5_small.gin] \
    [--vocab_dir=DIR] --decode=greedy|beam|sample [--beam_size=4] \
    [--num_decodes=K] [--temperature=T] [--top_k=N] --max_decode_length=256

Input rows need `id` (unique string or integer) and `question`; any other
field (e.g. `answer`) is copied to the output row. The question is encoded
as Hugging Face's CodeT5 tokenizer does (`<s> question </s>`,
`pad_jax.student.vocab.format_input`) and decoded by the t5x model's
`predict_batch_with_aux` (what `t5x.infer` runs) with the checkpoint restored
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
failing ones pruned, the rest ranked by the log-probability or a
`--step_verifier`; rows add `steps` and `complete`; docs/stepwise.md).

`--refine_rounds=R` (PaD's self-refinement, `pad_jax.decoding.refine_loop`): each
prediction is executed, and one that does not run or returns no number is
decoded again from the question, the program and the interpreter's feedback,
up to R times; rows add `rounds` (every attempt) and `prediction` is the last
one; `<output stem>.refine.json` / `.refine.md` report per round how many
were fixed and broken (docs/refinement.md).

Rows are appended (fsync'd) per batch; rerunning the same command skips the
ids already in `--output` (resume, `pad_jax.jsonl`'s rule: a torn last line
is redone, a malformed line elsewhere is an error). Bad input (a malformed
input line, a bad option, a missing checkpoint or model file) stops the run
with exit status 2 and one line `error: file:line: field 'f': message`.

`--checkpoint_dir` is a `checkpoint_<step>` directory or a model directory
(its latest checkpoint). The model is defined by `--gin_file` (t5x-style,
looked up in `--gin_search_paths`, which always include `.` and the
project's `gin_configs/`); by default it comes from next to the checkpoint:
the `model.gin` that `python -m pad_jax.convert_hf` writes, else the
`config.gin` that `t5x.train` writes into its MODEL_DIR (the run's whole
operative config, from which `MODEL` is built).
"""

from __future__ import annotations

import json
import sys

from absl import app
from absl import flags

from pad_jax import tf_devices
from pad_jax.decoding import decoder as decoder_lib
from pad_jax.decoding import refine_loop
from pad_jax.decoding.decoder import DECODE_MODES
from pad_jax.decoding.decoder import decode_file
from pad_jax.errors import DataError



def main(argv: list[str]) -> int:
  tf_devices.hide_accelerators_from_tf()  # before the tokenizer or data touch TF
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for flag in (_CHECKPOINT_DIR, _INPUT, _OUTPUT):
    if not flag.value:
      print(f"error: --{flag.name} is required", file=sys.stderr)
      return 2
  try:
    summary = decode_file(
        _CHECKPOINT_DIR.value, _GIN_FILE.value, _INPUT.value, _OUTPUT.value,
        decode=_DECODE.value, num_decodes=_NUM_DECODES.value,
        beam_size=_BEAM_SIZE.value, alpha=_ALPHA.value,
        temperature=_TEMPERATURE.value, top_k=_TOP_K.value,
        max_decode_length=_MAX_DECODE_LENGTH.value,
        max_input_length=_MAX_INPUT_LENGTH.value,
        batch_size=_BATCH_SIZE.value, seed=_SEED.value,
        step_candidates=_STEP_CANDIDATES.value,
        step_verifier=_STEP_VERIFIER.value,
        gin_search_paths=_GIN_SEARCH_PATHS.value,
        gin_bindings=_GIN_BINDINGS.value, vocab_dir=_VOCAB_DIR.value,
        resume=_RESUME.value, refine_rounds=_REFINE_ROUNDS.value)
  except (DataError, ValueError, FileNotFoundError) as e:
    # Bad input, options, checkpoint or model file: one line, status 2.
    print("error: " + str(e).replace("\n", " "), file=sys.stderr)
    return 2
  if "refine" in summary:
    print(refine_loop.table(summary["refine"]), file=sys.stderr)
  print(json.dumps(summary))
  return 0


# Flags are defined only when this module is the program (as in t5x), so that
# importing it as a library never clashes with another command's flags.
if __name__ == "__main__":
  _CHECKPOINT_DIR = flags.DEFINE_string(
      "checkpoint_dir", None, "A t5x checkpoint_<step> directory, or a model "
      "directory (its latest checkpoint).")
  _GIN_FILE = flags.DEFINE_multi_string(
      "gin_file", [], "Model gin file(s); default the model.gin next to the checkpoint, else "
      "the t5x config.gin of its model directory.")
  _GIN_SEARCH_PATHS = flags.DEFINE_list(
      "gin_search_paths", [], "More gin search paths ('.' and the project's "
      "gin_configs/ are always searched).")
  _GIN_BINDINGS = flags.DEFINE_multi_string(
      "gin_bindings", [], "Extra gin bindings, KEY=VALUE.")
  _VOCAB_DIR = flags.DEFINE_string(
      "vocab_dir", None, "Vocabulary directory (vocab.json + merges.txt) "
      "overriding the model file's.")
  _INPUT = flags.DEFINE_string("input", None, "Input JSONL (id, question).")
  _OUTPUT = flags.DEFINE_string("output", None, "Output JSONL (appended; resumable).")
  _DECODE = flags.DEFINE_enum("decode", "greedy", list(DECODE_MODES),
                              "Decoding strategy.")
  _BEAM_SIZE = flags.DEFINE_integer(
      "beam_size", 4, "Beam width (--decode=beam; --decode=stepwise_beam: "
      "partial programs kept per question).")
  _STEP_CANDIDATES = flags.DEFINE_integer(
      "step_candidates", 4, "--decode=stepwise_beam: candidate next lines per "
      "partial program (the argmax line + K-1 samples at --temperature, "
      "--top_k).")
  _STEP_VERIFIER = flags.DEFINE_string(
      "step_verifier", None, "--decode=stepwise_beam: a step verifier "
      "checkpoint (runs/step_verifier.gin) as the reasoning scorer; default "
      "the student's length-normalized log-probability.")
  _ALPHA = flags.DEFINE_float("alpha", 0.6, "Beam-search length penalty.")
  _NUM_DECODES = flags.DEFINE_integer(
      "num_decodes", 1, "Decodes per question (K > 1: all K written).")
  _TEMPERATURE = flags.DEFINE_float("temperature", 1.0,
                                    "Sampling temperature (--decode=sample).")
  _TOP_K = flags.DEFINE_integer("top_k", 0, "Top-k sampling (0: off).")
  _MAX_DECODE_LENGTH = flags.DEFINE_integer("max_decode_length", 256,
                                            "Most tokens decoded per question.")
  _MAX_INPUT_LENGTH = flags.DEFINE_integer(
      "max_input_length", 512, "Inputs are truncated to this many tokens.")
  _BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Questions per batch.")
  _SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
  _REFINE_ROUNDS = flags.DEFINE_integer(
      "refine_rounds", 0, "Self-refinement: re-decode a program that fails when run, with "
      "its feedback, up to this many rounds (0: off).")
  _RESUME = flags.DEFINE_bool("resume", True, "Skip ids already in --output "
                              "(--noresume: overwrite it).")
  app.run(main)
