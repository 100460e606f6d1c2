"""`python -m pad_jax.preflight`: a t5x.train command line checked in seconds.

On CPU with forced devices (`--xla_force_host_platform_device_count`) t5x's
mesh is data (processes) x model (local devices); two processes joined by
`jax.distributed` (t5x.train's `--multiprocess_gpu` flags) give a data axis
of 2. Each failure is one line and exit status 2.
"""

import socket
import subprocess
import sys

import jax
from orbax.checkpoint import multihost
import pytest
import seqio
from t5x import models
from t5x import partitioning

from conftest import REPO, subprocess_env
from pad_jax import preflight
from pad_jax.errors import ConfigError
from pad_jax.student import decoder_network

PREFIX = "pad_jax.preflight: "


def _argv(model: str = "models/tiny.gin", *extra: str, model_dir: str = "/tmp/preflight_run",
          task: str = "pad_demo_synthetic") -> list[str]:
  """A `t5x.train` command line, with `python -m pad_jax.preflight` in front."""
  argv = [sys.executable, "-m", "pad_jax.preflight", "--gin_search_paths=gin_configs",
          f"--gin_file={model}", "--gin_file=runs/pad_finetune.gin",
          f"--gin.MIXTURE_OR_TASK_NAME='{task}'"]
  if model_dir:
    argv.append(f"--gin.MODEL_DIR='{model_dir}'")
  return argv + list(extra)


def _env(devices: int) -> dict:
  return subprocess_env(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _run(argv: list[str], devices: int = 1) -> subprocess.CompletedProcess:
  return subprocess.run(argv, cwd=REPO, env=_env(devices), capture_output=True,
                        text=True, timeout=300)


def _error_line(result: subprocess.CompletedProcess) -> str:
  """The one line a failure prints (TF/XLA start-up noise aside)."""
  assert result.returncode == 2, result.stderr[-3000:]
  lines = [l for l in result.stderr.splitlines() if l.startswith(PREFIX)]
  assert len(lines) == 1, result.stderr[-3000:]
  return lines[0][len(PREFIX):]


def test_good_config_prints_the_table_on_8_forced_devices():
  # t5x.train-only flags are accepted as t5x.train accepts them.
  result = _run(_argv("models/tiny.gin", "--gin.BATCH_SIZE=16", "--alsologtostderr",
                      "--tfds_data_dir=/tmp/tfds", "--seqio_additional_cache_dirs=/tmp"),
                devices=8)
  assert result.returncode == 0, result.stderr[-3000:]
  out = result.stdout
  assert "OK" in out.splitlines()[0]
  assert "8 cpu" in out and "1, this is process 0" in out
  assert "data 1 x model 8  (axis names ('data', 'model'))" in out
  assert "BATCH_SIZE 16: 16 per device" in out
  assert "vocab 1024/model, heads 8/model, mlp 256/model" in out
  assert "pad_demo_synthetic" in out


def test_vocabulary_not_divisible_by_the_model_axis():
  # CodeT5's 32,100 ids over 8 devices on `model`: pjit refuses the shard.
  line = _error_line(_run(_argv("models/codet5_small.gin"), devices=8))
  assert line.startswith("vocab: size 32100 does not divide by the model mesh axis (8)")
  assert line.endswith("1, 2, 4")


def test_heads_not_divisible_by_the_model_axis():
  # T5.1.1-small's 6 heads over a model axis of 4 (32,100 divides by 4).
  line = _error_line(_run(_argv("models/t5_1_1_small.gin"), devices=4))
  assert line.startswith("heads: size 6 does not divide by the model mesh axis (4)")
  assert "vocab" not in line


def test_batch_not_divisible_by_the_data_axis_of_a_submesh():
  # runs/mesh_submesh.gin with a (1, 2, 1, 1) tile: data 4 x model 2.
  argv = _argv("models/tiny.gin", "--gin_file=runs/mesh_submesh.gin",
               "--gin.MODEL_PARALLEL_SUBMESH=(1, 2, 1, 1)", "--gin.BATCH_SIZE=6")
  line = _error_line(_run(argv, devices=8))
  assert line == ("BATCH_SIZE: Batch size (6) must be divisible by corresponding data "
                  "mesh size (4). Use a multiple of 4.")


def test_no_default_mesh_is_one_line():
  class NoMesh:  # t5x's default_mesh on a TPU kind it has no tile for (v5e)
    @property
    def mesh(self):
      raise ValueError("No default mesh for this configuration: specify "
                       "config.model_parallel_submesh explicitly. \nPlatform: tpu")
  with pytest.raises(ConfigError) as error:
    preflight.build_mesh(NoMesh())
  message = str(error.value)
  assert "\n" not in message and message.startswith("mesh: t5x cannot build it: No default mesh")
  assert "runs/mesh_submesh.gin" in message


def test_unregistered_task():
  line = _error_line(_run(_argv(task="pad_no_such_task")))
  assert line.startswith("MIXTURE_OR_TASK_NAME: no seqio task or mixture named "
                         "'pad_no_such_task'")


def test_every_problem_in_one_line():
  line = _error_line(_run(_argv("models/codet5_small.gin", model_dir="", task="nope"),
                          devices=8))
  assert line.startswith("MODEL_DIR: required")
  assert "; MIXTURE_OR_TASK_NAME: no seqio task" in line and "; vocab: size 32100" in line


def test_gin_error_names_the_file():
  line = _error_line(_run(_argv("models/no_such_model.gin")))
  assert line.startswith("--gin_file=models/no_such_model.gin: no such file")
  line = _error_line(_run(_argv("models/tiny.gin", "--gin.network.T5Config.no_such_field=1")))
  assert line.startswith("gin config: ") and "no_such_field" in line


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _two_processes(*extra: str) -> list[subprocess.CompletedProcess]:
  """Preflight as two processes of 4 CPU devices each, joined by jax.distributed."""
  port = _free_port()
  procs = [subprocess.Popen(
      _argv("models/tiny.gin", "--multiprocess_gpu", f"--coordinator_address=localhost:{port}",
            "--process_count=2", f"--process_index={index}", *extra),
      cwd=REPO, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for index in range(2)]
  results = []
  try:
    for p in procs:
      out, err = p.communicate(timeout=300)
      results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return results


def test_two_processes_good_config():
  results = _two_processes("--gin.BATCH_SIZE=8")
  for index, result in enumerate(results):
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"2, this is process {index}" in result.stdout
    assert "data 2 x model 4" in result.stdout
    assert "BATCH_SIZE 8: 4 per device (8 / data axis 2)" in result.stdout
    assert f"this process reads 4 (data shard {index} of 2)" in result.stdout


def test_two_processes_batch_not_divisible_by_the_data_axis():
  for result in _two_processes("--gin.BATCH_SIZE=3"):
    line = _error_line(result)
    assert line == ("BATCH_SIZE: Batch size (3) must be divisible by corresponding data "
                    "mesh size (2). Use a multiple of 2.")


def test_processes_without_a_distributed_client_fail(monkeypatch):
  # A TPU slice started without --multiprocess_gpu: Orbax needs the client.
  monkeypatch.setattr(jax, "process_count", lambda: 4)
  monkeypatch.setattr(multihost, "is_jax_distributed_client_initialized", lambda: False)
  (problem,) = preflight.process_problems()
  assert problem.startswith("processes: 4 processes but no jax.distributed client")
  assert "--multiprocess_gpu" in problem
  monkeypatch.setattr(multihost, "is_jax_distributed_client_initialized", lambda: True)
  assert preflight.process_problems() == []


@pytest.mark.parametrize("rules,mesh_shape,expected", [
    ((("vocab", "model"), ("heads", "model"), ("mlp", "model"), ("embed", None)),
     {"data": 1, "model": 4}, []),
    ((("vocab", "model"), ("heads", "model")), {"data": 2, "model": 8}, ["vocab"]),
    ((("embed", "data"), ("embed", "model"), ("heads", "model")), {"data": 3, "model": 2},
     ["embed"]),  # flax takes the first rule of a name
    ((("mlp", ("data", "model")),), {"data": 2, "model": 4}, []),
])
def test_axis_problems(rules, mesh_shape, expected):
  dims = {"vocab": 32100, "heads": 8, "mlp": 2048, "embed": 512}
  problems = preflight.axis_problems(dims, rules, mesh_shape)
  assert [p.split(":")[0] for p in problems] == expected


# --- decoder-only students ----------------------------------------------------


def test_decoder_smollm2_shape_reports_parameters_sequence_and_memory(tmp_path):
  # SmolLM2-135M's 9 heads / 3 kv heads over a model axis of 3; the demo
  # vocabulary stands in for the tokenizer.json models/smollm2_135m.gin requires.
  vocab_gin = tmp_path / "vocab.gin"
  vocab_gin.write_text("from __gin__ import dynamic_registration\n"
                       "from pad_jax.data import synthetic\n"
                       "VOCABULARY = @synthetic.demo_vocabulary()\n")
  argv = _argv("models/smollm2_135m.gin", f"--gin_file={vocab_gin}")
  result = _run(argv, devices=3)
  assert result.returncode == 0, result.stderr[-3000:]
  out = result.stdout
  assert "parameters    134.52M (DecoderConfig)" in out
  assert "DecoderConfig.num_heads 9/model, DecoderConfig.num_kv_heads 3/model" in out
  assert "9 query heads share 3 key/value heads" in out
  assert "inputs 128 + targets 256 = 384 decoder tokens (prefix LM)" in out
  assert "optimizer chain(clip_by_global_norm, adamw) (2 slots)" in out


def test_decoder_heads_not_divisible_by_the_model_axis():
  # tiny_decoder: 8 query heads, 4 kv heads over a model axis of 8; and a
  # prefix-LM sequence longer than the rotary positions.
  line = _error_line(_run(_argv(
      "models/tiny_decoder.gin",
      "--gin.decoder_network.DecoderConfig.max_position_embeddings=256"), devices=8))
  assert line.startswith("DecoderConfig.num_kv_heads: size 4 does not divide by the "
                         "model mesh axis (8)")
  assert "a device must hold whole heads" in line and "num_heads:" not in line
  assert line.endswith("TASK_FEATURE_LENGTHS: inputs 128 + targets 256 = 384 decoder "
                       "tokens exceeds DecoderConfig.max_position_embeddings 256")


def test_decoder_axis_problems_name_the_config_field():
  cfg = decoder_network.DecoderConfig(vocab_size=49152, num_heads=9, num_kv_heads=3)
  dims, logical = preflight.sharded_dims(cfg), preflight.logical_axes(cfg)
  rules = (("vocab", "model"), ("mlp", "model"), ("joined_kv", "model"), ("embed", None))
  problems = preflight.axis_problems(dims, rules, {"data": 1, "model": 2}, logical)
  assert [p.split(":")[0] for p in problems] == ["DecoderConfig.num_heads",
                                                "DecoderConfig.num_kv_heads"]
  assert problems[0].endswith("divide every dimension sharded over it: 1")
  assert preflight.axis_problems(dims, rules, {"data": 2, "model": 3}, logical) == []


def test_memory_estimate_shards_parameters_and_flags_a_small_device():
  cfg = decoder_network.DecoderConfig(vocab_size=1024, emb_dim=64, num_heads=4,
                                      num_kv_heads=2, num_layers=2, head_dim=16,
                                      mlp_dim=128)
  model = models.DecoderOnlyModel(decoder_network.DecoderOnlyTransformer(cfg),
                                  seqio.PassThroughVocabulary(1024), None)
  variables = preflight.abstract_variables(model, cfg)
  rules = partitioning.standard_logical_axis_rules()
  count, whole = preflight.sharded_param_bytes(variables, rules, {"data": 1, "model": 1})
  _, half = preflight.sharded_param_bytes(variables, rules, {"data": 1, "model": 2})
  assert count * 4 == whole and whole // 2 < half < whole  # norms stay whole
  assert preflight.optimizer_slots("chain(clip_by_global_norm, adamw)") == 2
  assert preflight.optimizer_slots("Adafactor") == 0
  acts = preflight.activation_bytes(cfg, 2, {"inputs": 8, "targets": 8})
  estimate = preflight.MemoryEstimate(count, whole, 2.0, acts)
  assert estimate.total == 4 * whole + acts
  (problem,) = preflight.memory_problems(estimate, limit=1000)
  assert problem.startswith("memory: an estimated") and "BATCH_SIZE" in problem
  assert preflight.memory_problems(estimate, limit=None) == []
