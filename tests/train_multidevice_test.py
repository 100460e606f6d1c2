"""The PaD run config on 8 forced CPU devices (data-parallel mesh)."""

import json

import numpy as np
import pytest

import train_testlib as tl


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory):
  return tl.write_program_dataset(
      tmp_path_factory.mktemp("multidevice") / "programs.jsonl")


def test_train_on_8_forced_devices(tmp_path, jsonl):
  model_dir = tmp_path / "run"
  result = tl.run(
      tl.train_argv(model_dir, 4, 4,
                    ("--gin.train.infer_eval_dataset_cfg=None",)),
      tl.subprocess_env(jsonl, devices=8))
  assert result.returncode == 0, result.stderr[-4000:]
  # t5x logs the mesh it built: 8 devices on the data axis.
  info = (model_dir / "model-info.txt").read_text()
  assert "target/" in info
  assert "num_devices=8" in result.stderr or "8 devices" in result.stderr \
      or "'data': 8" in result.stderr, result.stderr[-3000:]
  assert tl.checkpoint_steps(model_dir)[-1] == 4
  params = tl.load_params(model_dir / "checkpoint_4")
  assert all(np.isfinite(v).all() for v in params.values()
             if v.dtype.kind == "f")
  loss = tl.tensorboard_tags(model_dir / "train")["loss"]
  assert loss and np.isfinite(loss).all()
  report = json.loads(
      (model_dir / f"truncation-{tl.TASK}-train.json").read_text())
  assert report["examples"] > 0
