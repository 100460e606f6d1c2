"""The accelerator commands of docs/tpu_vm.md work as t5x flags and gin.

The commands are read from the page's code blocks (the remote command of a
`gcloud ... ssh --command='...'` is split the way the two shells would), not
copied here. Without a TPU or GPU:

* the TPU slice train command and the v5e command run for real on 8 forced
  CPU devices, with `models/tiny.gin` for the CodeT5 model, a small program
  dataset, `TRAIN_STEPS=1` and a 1-process `jax.distributed` coordinator on
  localhost for what Cloud TPU would give `--multiprocess_gpu` itself;
* the several-hosts `t5x.eval` command (`runs/multihost_eval.gin`) runs for
  real as two CPU processes on the TPU command's checkpoint;
* every other `t5x.train` / `t5x.eval` command is parsed against the absl
  flags t5x defines and by gin (a harness runs t5x's `__main__` with its
  `config_utils.run` replaced by the parse);
* each `pad_jax.preflight` line is a `t5x.train` line's flags and passes on
  CPU the same way.
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import socket
import subprocess
import sys

import pytest

import train_testlib as tl

DOC = tl.REPO / "docs" / "tpu_vm.md"
_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
_SEPARATORS = {"&&", ";", "&", "|", "||"}


def _remote_shell_lines(block: str) -> list[str]:
  """The shell lines a block runs: the remote command of a gcloud ssh."""
  text = block.replace("\\\n", " ")  # line continuations, at either level
  if text.lstrip().startswith("gcloud"):
    outer = shlex.split(text, comments=True)
    remote = [t for t in outer if t.startswith("--command=")]
    return [remote[0][len("--command="):]] if remote else []
  return text.splitlines()


def documented_commands() -> list[tuple[str, list[str]]]:
  """(module, argv after `-m module`) of every `python -m` line of the page."""
  commands = []
  for block in _BLOCK.findall(DOC.read_text(encoding="utf-8")):
    for line in _remote_shell_lines(block):
      tokens = shlex.split(line, comments=True)
      for i, token in enumerate(tokens[:-1]):
        if token == "-m":
          args = []
          for arg in tokens[i + 2:]:
            if arg in _SEPARATORS:
              break
            args.append(arg)
          commands.append((tokens[i + 1], args))
  return commands


def _commands(module: str) -> list[list[str]]:
  return [args for m, args in documented_commands() if m == module]


def _one(module: str, *required: str) -> list[str]:
  """The one documented `module` command whose args contain all `required`."""
  found = [a for a in _commands(module) if all(r in " ".join(a) for r in required)]
  assert len(found) == 1, (module, required, found)
  return found[0]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _gin_value(args: list[str], name: str) -> str:
  values = [a.split("=", 1)[1] for a in args if a.startswith(f"--gin.{name}=")]
  assert len(values) == 1, (name, args)
  return values[0]


def _localize(args: list[str], bucket: pathlib.Path) -> list[str]:
  """The documented args with the cloud bucket and the CodeT5 model made local."""
  out = []
  for arg in args:
    arg = arg.replace("gs://<bucket>", str(bucket)).replace("<best step>", "1")
    arg = re.sub(r"models/codet5_\w+\.gin", "models/tiny.gin", arg)
    out.append(arg)
  return out


def _single_process_coordinator() -> list[str]:
  """What Cloud TPU gives `jax.distributed.initialize()`, for one CPU process."""
  return [f"--coordinator_address=localhost:{_free_port()}",
          "--process_count=1", "--process_index=0"]


def _train_overrides(jsonl: pathlib.Path) -> list[str]:
  return [
      f"--gin.program_task.jsonl_path='{jsonl}'",
      "--gin.INITIAL_CHECKPOINT_PATH=None",  # a CodeT5 checkpoint: not tiny
      "--gin.TRAIN_STEPS=1", "--gin.EVAL_PERIOD=1",
      "--gin.train.infer_eval_dataset_cfg=None",
      "--gin.train.train_eval_dataset_cfg=None",
      f"--gin.TASK_FEATURE_LENGTHS={tl.FEATURE_LENGTHS}",
  ]


def _mesh_shapes(checkpoint: pathlib.Path) -> set[tuple[int, ...]]:
  shardings = json.loads((checkpoint / "state" / "_sharding").read_text())
  return {tuple(json.loads(v)["shape"]) for v in shardings.values()}


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory):
  return tl.write_program_dataset(
      tmp_path_factory.mktemp("tpu_vm_docs") / "programs.jsonl", n=40)


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
  return tmp_path_factory.mktemp("bucket")


def _local_dir(args: list[str], name: str, bucket: pathlib.Path) -> pathlib.Path:
  return pathlib.Path(_localize([_gin_value(args, name)], bucket)[0].strip("\"'"))


@pytest.fixture(scope="module")
def tpu_train(bucket, jsonl):
  """The TPU slice train command, run; its args and result."""
  args = _one("t5x.train", "codet5_base.gin", "--multiprocess_gpu")
  result = tl.run([sys.executable, "-m", "t5x.train",
                   *_localize(args, bucket), *_single_process_coordinator(),
                   *_train_overrides(jsonl)],
                  tl.subprocess_env(jsonl, devices=8))
  return args, result


def test_the_page_has_the_commands_this_test_checks():
  train = _commands("t5x.train")
  evals = _commands("t5x.eval")
  assert len(train) >= 4 and len(evals) >= 2, documented_commands()
  for args in train + evals:
    # A task something registers, never a name only a user gin file could.
    task = _gin_value(args, "MIXTURE_OR_TASK_NAME")
    assert task == "@program_task()" or "pad_eval_" in task, task
    if "--multiprocess_gpu" not in args:
      assert not any(a.startswith("--coordinator_address") for a in args)


def test_preflight_lines_are_train_lines_and_pass_on_cpu(bucket, jsonl):
  """`pad_jax.preflight` takes exactly a `t5x.train` line's flags, and passes."""
  train = _commands("t5x.train")
  preflight = _commands("pad_jax.preflight")
  assert preflight
  for args in preflight:
    assert args in train, args
    result = tl.run([sys.executable, "-m", "pad_jax.preflight",
                     *_localize(args, bucket), *_single_process_coordinator(),
                     f"--gin.program_task.jsonl_path='{jsonl}'",
                     "--gin.INITIAL_CHECKPOINT_PATH=None"],
                    tl.subprocess_env(jsonl, devices=8))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "OK, t5x.train can start" in result.stdout


def test_tpu_slice_train_command_runs_on_cpu(tpu_train, bucket):
  args, result = tpu_train
  # Slices: --multiprocess_gpu alone; Cloud TPU gives the coordinator.
  assert "--multiprocess_gpu" in args
  assert not any(a.startswith("--coordinator_address") for a in args)
  assert '--gin.ACTIVATION_DTYPE="bfloat16"' in args
  assert result.returncode == 0, result.stderr[-4000:]
  assert "Connecting to JAX distributed service" in result.stderr
  # t5x's CPU mesh on 8 forced devices: data 1 x model 8.
  model_dir = _local_dir(args, "MODEL_DIR", bucket)
  assert _mesh_shapes(model_dir / "checkpoint_1") == {(1, 8)}


def test_v5e_command_builds_the_documented_submesh(bucket, jsonl):
  args = _one("t5x.train", "runs/mesh_submesh.gin")
  assert "--multiprocess_gpu" in args
  assert _gin_value(args, "MODEL_PARALLEL_SUBMESH") == "(1, 2, 1, 1)"
  result = tl.run([sys.executable, "-m", "t5x.train",
                   *_localize(args, bucket), *_single_process_coordinator(),
                   *_train_overrides(jsonl)],
                  tl.subprocess_env(jsonl, devices=8))
  assert result.returncode == 0, result.stderr[-4000:]
  # model_parallel_submesh instead of num_partitions: a model tile of 2
  # devices, the other factor on data (t5x's get_mesh, not default_mesh's
  # per-TPU-kind table).
  model_dir = _local_dir(args, "MODEL_DIR", bucket)
  assert _mesh_shapes(model_dir / "checkpoint_1") == {(4, 2)}


def test_multihost_eval_command_runs_as_two_processes(tpu_train, bucket, jsonl,
                                                      tmp_path):
  """The several-hosts `t5x.eval` line, two CPU processes on localhost.

  `runs/multihost_eval.gin` starts `jax.distributed` before t5x.eval's first
  JAX computation; both processes restore the TPU run's checkpoint (saved
  on a data 1 x model 8 mesh) onto data 2 x model 1 and decode their half.
  """
  train_args, train_result = tpu_train
  assert train_result.returncode == 0, train_result.stderr[-4000:]
  args = _one("t5x.eval", "runs/multihost_eval.gin", "<shared directory>")
  shared = _local_dir(train_args, "MODEL_DIR", bucket)
  port = _free_port()
  procs = []
  for index in range(2):
    argv = [a.replace("<shared directory>/pad_large", str(shared))
            .replace("<best step>", "1").replace("<host0>:12346",
                                                 f"localhost:{port}")
            .replace("<N>", "2").replace("<i>", str(index)) for a in args]
    argv = [sys.executable, "-m", "t5x.eval", *_localize(argv, bucket),
            f"--gin_file={tl.TESTDATA / 'train_test_tasks.gin'}",
            f"--gin.MIXTURE_OR_TASK_NAME='{tl.EVAL_TASK}'",  # tiny vocabulary
            "--gin.EVALUATOR_NUM_EXAMPLES=8", "--gin.BATCH_SIZE=8",
            f"--gin.TASK_FEATURE_LENGTHS={tl.FEATURE_LENGTHS}"]
    log = open(tmp_path / f"eval_{index}.log", "w")
    procs.append((subprocess.Popen(argv, cwd=tl.REPO, env=tl.subprocess_env(jsonl),
                                   stdout=subprocess.DEVNULL, stderr=log), log))
  try:
    codes = [p.wait(timeout=600) for p, _ in procs]
  finally:
    for p, log in procs:
      if p.poll() is None:
        p.kill()
      log.close()
  logs = [(tmp_path / f"eval_{i}.log").read_text() for i in range(2)]
  assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
  assert all("Connecting to JAX distributed service" in log for log in logs)
  assert "sharded into 2 shards" in logs[0]
  assert _gin_value(args, "EVAL_OUTPUT_DIR") == "'<shared directory>/pad_large/eval'"
  eval_dir = shared / "eval"
  assert (eval_dir / "inference_eval" / f"{tl.EVAL_TASK}-metrics.jsonl").exists()


# Runs t5x.train / t5x.eval as `__main__` (their absl flags are defined
# there) with `config_utils.run` replaced: each argv of $ARGVS is parsed by
# absl (unknown flags and bad values fail) and its gin files and bindings by
# gin (missing files, unknown configurables or parameters fail).
_PARSE_ONLY = r"""
import json, os, runpy, sys
from absl import flags
import gin
from t5x import config_utils, gin_utils

def parse_each(main):
  module = sys.modules['__main__']
  for argv in json.loads(os.environ['ARGVS']):
    flags.FLAGS.unparse_flags()
    flags.FLAGS([sys.argv[0], *gin_utils.rewrite_gin_args(argv)])
    gin.clear_config()
    gin_utils.parse_gin_flags(
        flags.FLAGS.gin_search_paths + module._DEFAULT_GIN_SEARCH_PATHS,
        flags.FLAGS.gin_file, flags.FLAGS.gin_bindings)
    print('parsed', len(argv), flush=True)

config_utils.run = parse_each
module = sys.argv.pop(1)
runpy.run_module(module, run_name='__main__', alter_sys=True)
"""

_PLACEHOLDERS = {"<host0>": "localhost", "<N>": "2", "<i>": "0",
                 "<shared directory>": "/tmp/shared", "$i": "0"}


@pytest.mark.parametrize("module", ["t5x.train", "t5x.eval"])
def test_every_documented_command_parses_as_t5x_flags_and_gin(module):
  argvs = []
  for args in _commands(module):
    for placeholder, value in _PLACEHOLDERS.items():
      args = [a.replace(placeholder, value) for a in args]
    argvs.append(args)
  env = tl.subprocess_env(pathlib.Path("/nonexistent.jsonl"))
  env["ARGVS"] = json.dumps(argvs)
  result = subprocess.run([sys.executable, "-c", _PARSE_ONLY, module],
                          cwd=tl.REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-4000:]
  assert result.stdout.count("parsed") == len(argvs)
