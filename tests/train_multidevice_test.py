"""The PaD run config on 8 forced CPU devices (t5x CPU mesh: model axis 8).

The task is a program-dataset JSONL registered from the command line with
`--gin.MIXTURE_OR_TASK_NAME="@program_task()"`, as the README shows.
"""

import json
import socket
import subprocess

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
  # The arrays were saved from an 8-device mesh: on CPU t5x's mesh is
  # (processes, local devices) = data 1 x model 8, and the tiny model's
  # heads/mlp/vocab dimensions are split 8 ways over `model`.
  shardings = [json.loads(v) for v in json.loads(
      (model_dir / "checkpoint_4" / "state" / "_sharding").read_text()
  ).values()]
  assert {tuple(s["shape"]) for s in shardings} == {(1, 8)}
  assert all(s["axis_names"] == ["data", "model"] for s in shardings)
  assert any("model" in json.dumps(s["partition_spec"]) for s in shardings)
  assert tl.checkpoint_steps(model_dir)[-1] == 4
  params = tl.load_params(model_dir / "checkpoint_4")
  assert all(np.isfinite(v).all() for v in params.values()
             if v.dtype.kind == "f")
  loss = tl.tensorboard_tags(model_dir / "train")["loss"]
  assert loss and np.isfinite(loss).all()
  report = json.loads(
      (model_dir / f"truncation-{tl.TASK}-train.json").read_text())
  assert report["examples"] > 0


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_through_jax_distributed(tmp_path, jsonl):
  """Two `t5x.train` processes on localhost joined by `jax.distributed`.

  t5x's `--multiprocess_gpu` flags call `jax.distributed.initialize`; on CPU
  JAX then runs cross-process collectives with gloo. Each process reads its
  own half of the data and the checkpoint holds both data-iterator states.
  """
  model_dir = tmp_path / "run"
  port = _free_port()
  env = tl.subprocess_env(jsonl)
  procs, logs = [], []
  for index in range(2):
    argv = tl.train_argv(
        model_dir, 4, 4,
        ("--gin.train.infer_eval_dataset_cfg=None",
         "--gin.train.train_eval_dataset_cfg=None"))
    argv[3:3] = ["--multiprocess_gpu", f"--coordinator_address=localhost:{port}",
                 "--process_count=2", f"--process_index={index}"]
    log = open(tmp_path / f"process_{index}.log", "w")
    logs.append(log)
    procs.append(subprocess.Popen(argv, cwd=tl.REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=log))
  try:
    codes = [p.wait(timeout=1500) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
    for log in logs:
      log.close()
  assert codes == [0, 0], (tmp_path / "process_0.log").read_text()[-4000:]
  shardings = [json.loads(v) for v in json.loads(
      (model_dir / "checkpoint_4" / "state" / "_sharding").read_text()
  ).values()]
  assert {tuple(s["shape"]) for s in shardings} == {(2, 1)}  # data 2
  dataset = model_dir / "checkpoint_4" / "dataset"
  assert (dataset / "process_0-of-2").is_dir()
  assert (dataset / "process_1-of-2").is_dir()
  loss = tl.tensorboard_tags(model_dir / "train")["loss"]
  assert loss and np.isfinite(loss).all()
