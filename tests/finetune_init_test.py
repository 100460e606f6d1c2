"""Fine-tuning starts from a `pad_jax.convert_hf` (params-only) checkpoint.

A random Hugging Face T5 with the shapes of models/tiny.gin is converted with
`python -m pad_jax.convert_hf` and given to `python -m t5x.train` with
runs/pad_finetune.gin (AdamW) as INITIAL_CHECKPOINT_PATH: the run's step-0
checkpoint holds exactly the converted parameters with a fresh optimizer
state, and training moves on from them.
"""

import sys

import numpy as np
import pytest

import train_testlib as tl

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _tiny_hf_t5(path):
  """A random v1.1 T5 matching gin_configs/models/tiny.gin."""
  torch.manual_seed(0)
  config = transformers.T5Config(
      vocab_size=1024, d_model=128, d_kv=16, num_heads=8, d_ff=256,
      num_layers=2, num_decoder_layers=2, feed_forward_proj="gated-gelu",
      tie_word_embeddings=False, dropout_rate=0.0, pad_token_id=0,
      eos_token_id=1, decoder_start_token_id=0)
  transformers.T5ForConditionalGeneration(config).eval().save_pretrained(
      str(path))
  return path


def _convert(tmp_path):
  """(converted checkpoint_0, subprocess env with a small program dataset)."""
  hf_dir = _tiny_hf_t5(tmp_path / "hf")
  converted = tmp_path / "converted"
  jsonl = tl.write_program_dataset(tmp_path / "programs.jsonl", n=40)
  env = tl.subprocess_env(jsonl)
  result = tl.run(
      [sys.executable, "-m", "pad_jax.convert_hf", f"--hf_dir={hf_dir}",
       f"--out_dir={converted}"], env)
  assert result.returncode == 0, result.stderr[-4000:]
  return converted / "checkpoint_0", env


def _finetune(model_dir, ckpt, steps, env):
  result = tl.run(tl.train_argv(
      model_dir, steps, 2, extra=[f"--gin.INITIAL_CHECKPOINT_PATH='{ckpt}'",
                                  "--gin.EVAL_STEPS=1",
                                  "--gin.EVALUATOR_NUM_EXAMPLES=2"]), env)
  assert result.returncode == 0, result.stderr[-4000:]
  return result


def test_finetune_starts_from_converted_checkpoint(tmp_path):
  ckpt, env = _convert(tmp_path)
  model_dir = tmp_path / "run"
  result = _finetune(model_dir, ckpt, 2, env)
  assert "Not restoring the data iterator from the initial checkpoint" in \
      result.stderr

  converted_params = {k: v for k, v in tl.load_params(ckpt).items()
                      if k.startswith("['target']")}
  start = tl.load_params(model_dir / "checkpoint_0")
  end = tl.load_params(model_dir / "checkpoint_2")
  assert converted_params
  params = {k: v for k, v in start.items() if k.startswith("['target']")}
  assert len(params) == len(converted_params)
  for key, value in converted_params.items():
    np.testing.assert_array_equal(start[key], value, err_msg=key)
  # Fresh AdamW state (first and second moments zero) at step 0.
  moments = {k: v for k, v in start.items() 
             if k.startswith("['state']['param_states']")}
  assert moments, sorted(start)
  assert all(not np.any(v) for v in moments.values()), sorted(moments)
  # Training went on from the converted parameters.
  assert any(not np.array_equal(end[k], converted_params[k])
             for k in converted_params)


@pytest.mark.slow
def test_resumed_finetune_matches_uninterrupted(tmp_path):
  """Resuming (MODEL_DIR) keeps optimizer state and data position.

  The initial checkpoint's fresh-optimizer restore must not apply to the
  resume: 2 steps + restart to 4 equal 4 steps in one go, bit for bit.
  """
  ckpt, env = _convert(tmp_path)
  _finetune(tmp_path / "resumed", ckpt, 2, env)
  result = _finetune(tmp_path / "resumed", ckpt, 4, env)
  assert "Starting main loop over steps 2-4" in result.stderr
  _finetune(tmp_path / "straight", ckpt, 4, env)
  a = tl.load_params(tmp_path / "resumed" / "checkpoint_4")
  b = tl.load_params(tmp_path / "straight" / "checkpoint_4")
  assert a.keys() == b.keys()
  assert any("param_states" in k for k in a)
  different = [k for k in a if not np.array_equal(a[k], b[k])]
  assert not different, different
