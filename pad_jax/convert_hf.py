r"""Imports a Hugging Face checkpoint (T5 / CodeT5, Llama / Qwen2 / Mistral).

  python -m pad_jax.convert_hf --hf_dir=DIR --out_dir=CKPT

reads `DIR/config.json` and `DIR/model.safetensors` (or a sharded
`model.safetensors.index.json`, or `pytorch_model.bin`) and writes

* `CKPT/checkpoint_0/`: a t5x (Orbax) checkpoint with the parameters (no
  optimizer state, like a pre-trained checkpoint), restorable by `t5x.train`
  as the start of a fine-tuning run (`utils.RestoreCheckpointConfig(
  path='CKPT/checkpoint_0', mode='specific', strict=False)`, as
  `gin_configs/runs/pad_finetune.gin` does with INITIAL_CHECKPOINT_PATH),
  `t5x.infer`/`t5x.eval` (`CHECKPOINT_PATH`) and `python -m pad_jax.infer`;
* `CKPT/model.gin`: the model file for it (`--gin_file=CKPT/model.gin`), the
  project's CodeT5 model config with this checkpoint's dimensions.

config.json's `model_type` picks the importer: T5 / CodeT5 here
(`pad_jax.student.hf_import`), Llama, Qwen2 and Mistral as a decoder-only
student on t5x's DecoderOnlyModel (`pad_jax.student.hf_import_decoder`,
whose `model.gin` is `models/smollm2_135m.gin` with the checkpoint's
dimensions); any other `model_type` is a one-line error.

Every tensor is mapped and shape-checked, unused or missing tensors are
errors, and configurations the network cannot express exactly (another
layer-norm epsilon, exact-erf GELU, ...) are refused with a one-line reason
(`error: <file>: field '<f>': <why>`, exit status 2), as every command's
errors are (`pad_jax/cli.py`).

Output layer: T5 v1.0 / CodeT5 tie it to the embedding and scale the decoder
output by `d_model**-0.5` (`logits_via_embedding = True`). Any other
combination (v1.1's untied head, or transformers 5's tied-but-unscaled v1.1)
is written as an explicit `logits_dense` kernel with the scale folded in, which
computes the same logits.
"""

from __future__ import annotations

import os

from absl import flags

from pad_jax import cli
from pad_jax import tf_devices
from pad_jax.student.hf_import_decoder import convert_any


def main(argv: list[str]) -> int:
  """Converts --hf_dir into --out_dir (errors: see `pad_jax.cli`)."""
  tf_devices.hide_accelerators_from_tf()  # TF (imported by t5x) stays on the host
  cli.no_arguments(argv)
  cli.require(hf_dir=_HF_DIR.value, out_dir=_OUT_DIR.value)
  path = convert_any(_HF_DIR.value, _OUT_DIR.value)  # ConversionError: a ConfigError
  print(f"wrote {path} and {os.path.join(_OUT_DIR.value, 'model.gin')}")
  return 0


# Flags are defined only when this module is the program (as in t5x), so that
# importing it as a library never clashes with another command's flags.
if __name__ == "__main__":
  _HF_DIR = flags.DEFINE_string("hf_dir", None, "Hugging Face model directory "
                                "(config.json + model.safetensors or "
                                "pytorch_model.bin).")
  _OUT_DIR = flags.DEFINE_string("out_dir", None, "Output t5x model directory "
                                 "(gets checkpoint_0/ and model.gin).")
  cli.run(main)
