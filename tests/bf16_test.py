"""bfloat16 activations (`--gin.ACTIVATION_DTYPE="'bfloat16'"`) train and decode on CPU.

The accelerator setting of the model files, exercised on CPU with the tiny
model: 3 steps of the real `python -m t5x.train` (models/tiny.gin +
runs/pad_finetune.gin), then `python -m pad_jax.infer` decodes two questions
from the run's saved config.gin (which carries the bfloat16 setting).
"""

import json
import sys

import numpy as np
import pytest

from pad_jax.student import model_gin
import train_testlib as tl

STEPS = 3


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
  """(MODEL_DIR, env) of a 3-step bfloat16 t5x.train run of models/tiny.gin."""
  tmp = tmp_path_factory.mktemp("bf16")
  env = tl.subprocess_env(tl.write_program_dataset(tmp / "programs.jsonl", n=40))
  model_dir = tmp / "run"
  result = tl.run(tl.train_argv(model_dir, STEPS, STEPS, extra=[
      "--gin.ACTIVATION_DTYPE='bfloat16'",
      "--gin.train.infer_eval_dataset_cfg=None",
      "--gin.train.train_eval_dataset_cfg=None"]), env)
  assert result.returncode == 0, result.stderr[-4000:]
  return model_dir, env


def test_model_files_default_to_float32_and_take_bfloat16():
  for bindings, dtype in (((), "float32"), (("ACTIVATION_DTYPE='bfloat16'",), "bfloat16")):
    for model_file in ("models/tiny.gin", "models/codet5_small.gin", "models/codet5_base.gin"):
      model = model_gin.load_model_from_gin([model_file], bindings, with_optimizer=False)
      assert model.module.config.dtype == dtype, model_file


def test_bfloat16_run_trains_with_float32_parameters(bf16_run):
  model_dir, _ = bf16_run
  assert "ACTIVATION_DTYPE = 'bfloat16'" in (model_dir / "config.gin").read_text()
  assert tl.checkpoint_steps(model_dir)[-1] == STEPS
  params = tl.load_params(model_dir / f"checkpoint_{STEPS}")
  floats = [v for v in params.values() if v.dtype.kind == "f"]
  assert floats and all(v.dtype == np.float32 and np.isfinite(v).all() for v in floats)
  loss = tl.tensorboard_tags(model_dir / "train")["loss"]
  assert loss and np.isfinite(loss).all()


def test_bfloat16_run_decodes(bf16_run, tmp_path):
  model_dir, env = bf16_run
  inputs = tmp_path / "in.jsonl"
  inputs.write_text("".join(json.dumps({"id": f"q{i}", "question": q}) + "\n" for i, q in
                            enumerate(["What is 12 plus 7?", "Tom has 3 apples and eats 1."])))
  out = tmp_path / "out.jsonl"
  proc = tl.run([sys.executable, "-m", "pad_jax.infer", f"--checkpoint_dir={model_dir}",
                 f"--input={inputs}", f"--output={out}", "--max_decode_length=8",
                 "--batch_size=2"], env)
  assert proc.returncode == 0, proc.stderr[-4000:]
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [r["id"] for r in rows] == ["q0", "q1"]
  assert all(r["tokens"] and np.isfinite(r["score"]) for r in rows)
