r"""Checks a `python -m t5x.train` command on this machine, in seconds, without training.

  python -m pad_jax.preflight --gin_search_paths=gin_configs \
    --gin_file=models/codet5_small.gin --gin_file=runs/pad_finetune.gin \
    --gin.MODEL_DIR="'/tmp/run'" --gin.MIXTURE_OR_TASK_NAME="'pad_demo_synthetic'"

Give it exactly the flags of the `t5x.train` command (run it on every host
of a slice, as the training command): `--gin_search_paths`, `--gin_file`,
`--gin.NAME=value` / `--gin_bindings`, and t5x.train's other flags, among
them `--multiprocess_gpu --coordinator_address --process_count
--process_index`, on which it calls `jax.distributed.initialize` as t5x.train
does. It parses the gin config as t5x.train would and then, instead of
training, builds what t5x builds first and checks

* the processes: more than one without a `jax.distributed` client (t5x.train
  starts one only with `--multiprocess_gpu`) fails at Orbax's first
  checkpoint;
* the mesh t5x's partitioner builds (`default_mesh` has no default for some
  TPU kinds, e.g. v5e/v5p/v6e: `--gin_file=runs/mesh_submesh.gin`);
* that BATCH_SIZE divides over the data axis (t5x's `get_data_layout`);
* that every network dimension the logical axis rules shard (vocabulary,
  heads, mlp, ...) divides by its mesh axis (pjit refuses uneven shardings:
  CodeT5's 32,100-id vocabulary does not divide by 8);
* that MODEL_DIR is given and MIXTURE_OR_TASK_NAME resolves to a registered
  seqio task.

Success prints a short table (devices, processes, mesh, per-device batch,
sharded dimensions, task) and exits 0; a failure is one line naming every
problem found, exit status 2.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import Any, Mapping, Optional, Sequence

from absl import flags
from absl import logging

from pad_jax import tf_devices  # pylint: disable=g-bad-import-order  # before anything imports TensorFlow (quietly)
import gin
import jax
from orbax.checkpoint import multihost
from t5x import gin_utils
from t5x import train as t5x_train

from pad_jax import cli
from pad_jax.errors import ConfigError
from pad_jax.t5x_hooks import task_lookup

# The run files say `import __main__ as train_script` and bind
# `train_script.train.*`. When this module is the program, its `train` is
# t5x's, as in `python -m t5x.train`, so the same bindings parse and are
# checked against t5x's signature. It is never called.
train = t5x_train.train

# Network dimensions a logical axis name stands for (t5x's T5 networks and
# pad_jax.student.network), read from the network's T5Config.
_LOGICAL_DIMS = {
    "vocab": lambda c: c.vocab_size,
    "heads": lambda c: c.num_heads,
    "mlp": lambda c: c.mlp_dim,
    "embed": lambda c: c.emb_dim,
    "kv": lambda c: c.head_dim,
    "joined_kv": lambda c: c.num_heads * c.head_dim,
}


@dataclasses.dataclass(frozen=True)
class T5xTrainSetup:
  """What t5x.train builds first from its gin config.

  Read back from a parsed config to be checked; not a setting of its own
  (the pipeline's train settings are `pad_jax.pipeline.configs.TrainConfig`).

  Attributes:
    partitioner: the `train.partitioner` (its mesh is not built yet).
    batch_size: the train dataset's global batch size (BATCH_SIZE).
    task: the train dataset's mixture or task name (or object).
    model_dir: MODEL_DIR, or None when not given.
    network_config: the network's T5Config, or None for another network.
  """
  partitioner: Any
  batch_size: int
  task: Any
  model_dir: Optional[str]
  network_config: Any


def parse_train_gin(search_paths: Sequence[str], gin_files: Sequence[str],
                    bindings: Sequence[str]) -> None:
  """Parses the config as t5x.train does (its search paths, files, bindings)."""
  search_paths = list(search_paths) + t5x_train._DEFAULT_GIN_SEARCH_PATHS  # pylint: disable=protected-access
  for gin_file in gin_files:  # gin fails on a missing one with a TypeError
    if not any(os.path.isfile(os.path.join(p, gin_file)) for p in ["", *search_paths]):
      raise ConfigError(f"--gin_file={gin_file}: no such file in the current directory "
                        f"or the gin search paths {search_paths}")
  try:
    with cli.quiet_gin_search():
      gin_utils.parse_gin_flags(search_paths, gin_files, bindings, finalize_config=False)
  except (ValueError, ImportError, AttributeError, NameError, SyntaxError, TypeError,
          OSError) as e:
    raise ConfigError(f"gin config: {cli.first_line(e)}") from None


def read_train_setup() -> T5xTrainSetup:
  """Builds the partitioner, the train dataset config and the network config.

  The model is built without its optimizer: the optimizer's schedule may
  count the training data (`TRAIN_STEPS = @train_hooks.steps_for_epochs()`).
  """
  try:
    partitioner = gin.query_parameter("train.partitioner").scoped_configurable_fn()
    dataset = gin.query_parameter("train.train_dataset_cfg").scoped_configurable_fn()
    model_dir = gin.query_parameter("train.model_dir")
    model_ref = gin.query_parameter("%MODEL")
    gin.bind_parameter(f"{model_ref.scoped_selector}.optimizer_def", None)
    model = model_ref.scoped_configurable_fn()
  except (ValueError, ImportError, AttributeError, NameError, TypeError, OSError) as e:
    raise ConfigError(f"gin config: {cli.first_line(e)}") from None
  if isinstance(model_dir, gin.config.ConfigurableReference):
    model_dir = model_dir.scoped_configurable_fn()
  return T5xTrainSetup(
      partitioner=partitioner,
      batch_size=dataset.batch_size,
      task=dataset.mixture_or_task_name,
      model_dir=None if model_dir is gin.REQUIRED else model_dir,
      network_config=getattr(getattr(model, "module", None), "config", None))


def build_mesh(partitioner: Any) -> jax.sharding.Mesh:
  """The partitioner's mesh (t5x's `default_mesh`), or a ConfigError saying why not."""
  try:
    return partitioner.mesh
  except (ValueError, AssertionError) as e:
    raise ConfigError(
        f"mesh: t5x cannot build it: {cli.first_line(e) or 'assertion failed'} "
        f"({jax.device_count()} {jax.devices()[-1].device_kind} devices; for TPU "
        "kinds t5x has no default tile for, e.g. v5e/v5p/v6e, add "
        "--gin_file=runs/mesh_submesh.gin after the run file)"
    ) from None


def process_problems() -> list[str]:
  """Several processes need the jax.distributed client Orbax checkpoints with."""
  if jax.process_count() > 1 and not multihost.is_jax_distributed_client_initialized():
    return [f"processes: {jax.process_count()} processes but no jax.distributed "
            "client: add --multiprocess_gpu (t5x.train calls "
            "jax.distributed.initialize only with it; Orbax's checkpointing "
            "fails without it)"]
  return []


def task_problems(setup: T5xTrainSetup) -> list[str]:
  """MODEL_DIR given, MIXTURE_OR_TASK_NAME given and registered."""
  problems = []
  if setup.model_dir is None:
    problems.append("MODEL_DIR: required; give --gin.MODEL_DIR=\"'/path/to/run'\"")
  if setup.task is gin.REQUIRED:
    problems.append("MIXTURE_OR_TASK_NAME: required; give "
                    "--gin.MIXTURE_OR_TASK_NAME=\"'pad_...'\" or \"@program_task()\"")
  else:
    try:
      task_lookup.get_task(setup.task)
    except ValueError as e:
      problems.append(cli.first_line(e))
  return problems


def batch_problems(partitioner: Any, batch_size: int) -> list[str]:
  """The batch divides over the data axis and the hosts (t5x's own check)."""
  try:
    partitioner.get_data_layout(batch_size)
  except ValueError as e:
    return [f"BATCH_SIZE: {e} Use a multiple of {partitioner.data_mesh_size}."]
  return []


def sharded_dims(network_config: Any) -> dict[str, int]:
  """{logical axis name: size} of the network dimensions rules can shard."""
  try:
    return {name: int(size(network_config)) for name, size in _LOGICAL_DIMS.items()}
  except AttributeError:  # no network or not a T5Config: nothing to check
    return {}


def mesh_axis_of(rules: Sequence[tuple[str, Any]]) -> dict[str, Any]:
  """{logical axis name: mesh axis} of the first rule for each name (flax's order)."""
  axes: dict[str, Any] = {}
  for logical, mesh_axis in rules:
    axes.setdefault(logical, mesh_axis)
  return axes


def axis_problems(dims: Mapping[str, int], rules: Sequence[tuple[str, Any]],
                  mesh_shape: Mapping[str, int]) -> list[str]:
  """Every sharded network dimension divides by the size of its mesh axes.

  Args:
    dims: {logical axis name: dimension size}, e.g. {'vocab': 32100}.
    rules: t5x logical axis rules, e.g. (('vocab', 'model'), ...).
    mesh_shape: {mesh axis name: size}.

  Returns:
    One message per dimension that pjit would refuse to shard.
  """
  axes = {name: (a,) if isinstance(a, str) else tuple(a)
          for name, a in mesh_axis_of(rules).items() if a is not None and name in dims}
  problems = []
  for name, mesh_axes in axes.items():
    ways = math.prod(mesh_shape.get(a, 1) for a in mesh_axes)
    if dims[name] % ways:
      # Sizes of these mesh axes that every dimension sharded over them divides.
      common = math.gcd(*(dims[n] for n, a in axes.items() if a == mesh_axes))
      fits = [d for d in range(1, common + 1) if common % d == 0 and d <= ways]
      problems.append(
          f"{name}: size {dims[name]} does not divide by the "
          f"{'x'.join(mesh_axes)} mesh axis ({ways}); sizes of that axis that "
          f"divide every dimension sharded over it: {', '.join(map(str, fits))}")
  return problems


def summary_table(setup: T5xTrainSetup, mesh: jax.sharding.Mesh) -> str:
  """The short table printed on success."""
  data = setup.partitioner.data_mesh_size
  layout = setup.partitioner.get_data_layout(setup.batch_size)
  devices = jax.devices()
  kinds = sorted({d.device_kind for d in devices})
  dims = sharded_dims(setup.network_config)
  axes = mesh_axis_of(setup.partitioner.logical_axis_rules)
  sharded = ", ".join(f"{n} {s}/{axes[n]}" for n, s in dims.items() if axes.get(n))
  rows = [
      ("devices", f"{len(devices)} {devices[0].platform} ({', '.join(kinds)}), "
                  f"{jax.local_device_count()} local"),
      ("processes", f"{jax.process_count()}, this is process {jax.process_index()}"),
      ("mesh", " x ".join(f"{a} {n}" for a, n in mesh.shape.items())
               + f"  (axis names {tuple(mesh.axis_names)})"),
      ("batch", f"BATCH_SIZE {setup.batch_size}: {setup.batch_size // data} per "
                f"device ({setup.batch_size} / data axis {data}); this process reads "
                f"{setup.batch_size // layout.num_shards} (data shard "
                f"{layout.shard_id} of {layout.num_shards})"),
      ("sharded dims", sharded or "none (model axis 1 or no T5Config)"),
      ("task", task_lookup.task_name(setup.task)),
      ("activations", str(getattr(setup.network_config, "dtype", "?"))),
      ("MODEL_DIR", str(setup.model_dir)),
  ]
  return "\n".join(f"  {name:<13} {value}" for name, value in rows)


def start_distributed(coordinator_address: Optional[str], process_count: Optional[int],
                      process_index: Optional[int], timeout: Optional[int]) -> None:
  """`jax.distributed.initialize` as t5x.train calls it with --multiprocess_gpu."""
  kwargs = {"initialization_timeout": timeout} if timeout else {}
  try:
    jax.distributed.initialize(coordinator_address, process_count, process_index, **kwargs)
  except (RuntimeError, ValueError) as e:
    raise ConfigError(f"--multiprocess_gpu: jax.distributed.initialize failed: "
                      f"{cli.first_line(e)}") from None


def main(argv: Sequence[str]) -> int:
  tf_devices.hide_accelerators_from_tf()  # as t5x.train, before TF touches a device
  logging.set_verbosity(logging.WARNING)  # the table, not t5x's INFO logs
  cli.no_arguments(argv)
  if _MULTIPROCESS_GPU.value:
    start_distributed(_COORDINATOR_ADDRESS.value, _PROCESS_COUNT.value,
                      _PROCESS_INDEX.value, _INITIALIZATION_TIMEOUT.value)
  parse_train_gin(_GIN_SEARCH_PATHS.value, _GIN_FILE.value or [], _GIN_BINDINGS.value)
  setup = read_train_setup()
  mesh = build_mesh(setup.partitioner)
  problems = [
      *process_problems(),
      *task_problems(setup),
      *batch_problems(setup.partitioner, setup.batch_size),
      *axis_problems(sharded_dims(setup.network_config),
                     setup.partitioner.logical_axis_rules,
                     mesh.shape),
  ]
  if problems:
    raise ConfigError("; ".join(problems))
  print(f"pad_jax.preflight: OK, t5x.train can start with this config\n"
        f"{summary_table(setup, mesh)}")
  return 0


# Flags are defined only when this module is the program (as in t5x): those
# of `t5x.train`, so that its command line is accepted unchanged.
if __name__ == "__main__":
  _GIN_FILE = flags.DEFINE_multi_string("gin_file", None, "Gin files, as t5x.train.")
  _GIN_BINDINGS = flags.DEFINE_multi_string(
      "gin_bindings", [], "Gin bindings; `--gin.KEY=VALUE` is the same.")
  _GIN_SEARCH_PATHS = flags.DEFINE_list("gin_search_paths", ["."],
                                        "Gin search paths, as t5x.train.")
  flags.DEFINE_string("tfds_data_dir", None, "Accepted as t5x.train does (unused).")
  flags.DEFINE_list("seqio_additional_cache_dirs", [], "Accepted as t5x.train does (unused).")
  _MULTIPROCESS_GPU = flags.DEFINE_boolean(
      "multiprocess_gpu", False, "Call jax.distributed.initialize as t5x.train does.")
  _COORDINATOR_ADDRESS = flags.DEFINE_string("coordinator_address", None,
                                             "host:port of the coordinator.")
  _PROCESS_COUNT = flags.DEFINE_integer("process_count", None, "Number of processes.")
  _PROCESS_INDEX = flags.DEFINE_integer("process_index", None, "Index of this process.")
  _INITIALIZATION_TIMEOUT = flags.DEFINE_integer(
      "initialization_timeout", None, "Timeout (s) of jax.distributed.initialize.")
  try:
    _ARGV = list(gin_utils.rewrite_gin_args(sys.argv))
  except ValueError as e:  # `--gin.NAME` without `=value`
    print(f"pad_jax.preflight: {e}", file=sys.stderr)
    sys.exit(2)
  cli.run(main, prefix="pad_jax.preflight", argv=_ARGV)
