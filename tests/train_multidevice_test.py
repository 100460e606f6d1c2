"""The PaD run config on 8 forced CPU devices (data-parallel mesh).

The task is a program-dataset JSONL registered from the command line with
`--gin.MIXTURE_OR_TASK_NAME="@program_task()"`, as the README shows.
"""

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
                    ("--gin.train.infer_eval_dataset_cfg=None",
                     "--gin.train.train_eval_dataset_cfg=None"),
                    jsonl=jsonl),  # registered by @program_task()
      tl.subprocess_env(jsonl, devices=8))
  assert result.returncode == 0, result.stderr[-4000:]
  # t5x logs the mesh it built: 8 devices on the data axis, 1 on model.
  assert "global_mesh axis_names: ('data', 'model')" in result.stderr
  assert "global_mesh devices shape: (8, 1)" in result.stderr, \
      [l for l in result.stderr.splitlines() if "global_mesh" in l]
  assert tl.checkpoint_steps(model_dir)[-1] == 4
  params = tl.load_params(model_dir / "checkpoint_4")
  assert all(np.isfinite(v).all() for v in params.values()
             if v.dtype.kind == "f")
  loss = tl.tensorboard_tags(model_dir / "train")["loss"]
  assert loss and np.isfinite(loss).all()
  report = json.loads(
      (model_dir / f"truncation-{tl.TASK}-train.json").read_text())
  assert report["examples"] > 0
