r"""Exports a t5x student checkpoint as a Hugging Face model directory.

  python -m pad_jax.export_hf --checkpoint_dir=DIR --out_dir=HF_DIR

e.g. a pipeline run's student:

  python -m pad_jax.export_hf --checkpoint_dir=runs/demo/train/model \
    --out_dir=exported/demo_student

`--checkpoint_dir` is a `checkpoint_<step>` directory, a t5x MODEL_DIR (its
latest checkpoint) or what `python -m pad_jax.convert_hf` wrote. The model is
defined by `--gin_file`, by default the `model.gin` next to the checkpoint
(convert_hf's), else the `config.gin` that `t5x.train` saved in MODEL_DIR,
as `python -m pad_jax.infer` finds it. HF_DIR gets

* `config.json` + `model.safetensors`: a `T5ForConditionalGeneration` (T5 /
  CodeT5 students) or a `LlamaForCausalLM` / `Qwen2ForCausalLM`
  (decoder-only students), the exact inverse of convert_hf (checked:
  importing the export back gives the checkpoint's parameters bit for bit);
* `generation_config.json`: the special ids (T5: decoder start 0, EOS, PAD)
  and `max_new_tokens` when the run's decode length is known;
* the tokenizer (`tokenizer.json`, `tokenizer_config.json`, ...): for T5
  students with a byte-level BPE vocabulary (CodeT5's, the demo's)
  `AutoTokenizer` gives the ids pad-jax encodes, `<s> question </s>`
  included; for decoder-only students the model's own tokenizer files, or
  the demo vocabulary as a tokenizer whose `<s>` starts the prompt
  (`hf_export.decoder_vocabulary`);
* `README.md`: a model card (the network, the class to load it with, base
  model, pad-jax version and this command, a usage snippet with the prompt
  format; inside a pipeline run directory also the teacher, the data counts
  and the eval table of `report.json`).

Then `AutoModelForSeq2SeqLM.from_pretrained(HF_DIR)`, or
`AutoModelForCausalLM` for a decoder-only student given the card's prompt
(start id, question, newline), greedy-decodes the same ids as `python -m
pad_jax.infer --decode=greedy`. Bad input (no such directory, no checkpoint,
a model without an exporter) is one line and exit status 2
(`pad_jax/cli.py`).
"""

from __future__ import annotations

import json
import shlex
import sys

from absl import flags

from pad_jax import checkpoints
from pad_jax import cli
from pad_jax import tf_devices
from pad_jax.decoding.decoder import model_gin_files
from pad_jax.errors import ConfigError
from pad_jax.student import hf_export


def main(argv: list[str]) -> int:
  """Exports --checkpoint_dir into --out_dir (errors: see `pad_jax.cli`)."""
  tf_devices.hide_accelerators_from_tf()  # TF (imported by t5x) stays on the host
  cli.no_arguments(argv)
  cli.require(checkpoint_dir=_CHECKPOINT_DIR.value, out_dir=_OUT_DIR.value)
  try:  # a missing path the flags name is bad input, not an I/O failure
    checkpoint = checkpoints.resolve_checkpoint(_CHECKPOINT_DIR.value)
    gin_files = _GIN_FILE.value or model_gin_files(checkpoint)
  except FileNotFoundError as e:
    raise ConfigError(str(e)) from e
  command = " ".join(["python -m pad_jax.export_hf"] +
                     [shlex.quote(a) for a in sys.argv[1:]])
  summary = hf_export.export(checkpoint, gin_files, _OUT_DIR.value,
                             command=command, vocab_dir=_VOCAB_DIR.value,
                             max_new_tokens=_MAX_NEW_TOKENS.value)
  print(json.dumps(summary))
  return 0


# Flags are defined only when this module is the program (as in t5x), so that
# importing it as a library never clashes with another command's flags.
if __name__ == "__main__":
  _CHECKPOINT_DIR = flags.DEFINE_string(
      "checkpoint_dir", None, "A t5x checkpoint_<step> directory, a model "
      "directory (its latest checkpoint) or a convert_hf output directory.")
  _OUT_DIR = flags.DEFINE_string("out_dir", None, "Output Hugging Face model "
                                 "directory (created; its files are replaced).")
  _GIN_FILE = flags.DEFINE_multi_string(
      "gin_file", [], "Model gin file(s); default the model.gin next to the "
      "checkpoint, else the t5x config.gin of its model directory.")
  _VOCAB_DIR = flags.DEFINE_string(
      "vocab_dir", None, "Vocabulary directory (vocab.json + merges.txt) "
      "overriding the model file's.")
  _MAX_NEW_TOKENS = flags.DEFINE_integer(
      "max_new_tokens", None, "generation_config.json's max_new_tokens; "
      "default the run's decode length when known.")
  cli.run(main)
