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
  seqio task;
* for a decoder-only student (`models/smollm2_135m.gin`, `tiny_decoder.gin`,
  ...): that the query heads (`DecoderConfig.num_heads`) and the key/value
  heads (`num_kv_heads`) divide by the mesh axis that shards them (their
  projections' `joined_kv` axis: a device holds whole heads), and that the
  task's inputs + targets, one prefix-LM decoder sequence, fit
  `max_position_embeddings`.

It also reports the parameters and a rough per-device memory estimate
(parameters, gradients and optimizer state sharded by the rules, plus
activations without rematerialisation).

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
from pad_jax.student import decoder_network
from pad_jax.t5x_hooks import task_lookup

# The run files say `import __main__ as train_script` and bind
# `train_script.train.*`. When this module is the program, its `train` is
# t5x's, as in `python -m t5x.train`, so the same bindings parse and are
# checked against t5x's signature. It is never called.
train = t5x_train.train

# Network dimensions a logical axis name stands for (t5x's T5 networks and
# pad_jax.student.network), read from the network's T5Config.
_T5_DIMS = {
    "vocab": lambda c: c.vocab_size,
    "heads": lambda c: c.num_heads,
    "mlp": lambda c: c.mlp_dim,
    "embed": lambda c: c.emb_dim,
    "kv": lambda c: c.head_dim,
    "joined_kv": lambda c: c.num_heads * c.head_dim,
}

# The decoder-only network (pad_jax.student.decoder_network): label ->
# (logical axis name, size). Its query/out kernels are [embed, joined_kv]
# with joined_kv = num_heads * head_dim, its key/value kernels the same with
# num_kv_heads * head_dim; a device must hold whole heads, so the head
# counts themselves must divide by the mesh axis joined_kv is sharded over.
# Its decode cache is [batch, kv_heads, length, kv]: t5x's standard rules
# have no `kv_heads` rule, so they leave the cache unsharded over `model`.
_DECODER_DIMS = {
    "vocab": ("vocab", lambda c: c.vocab_size),
    "mlp": ("mlp", lambda c: c.mlp_dim),
    "embed": ("embed", lambda c: c.emb_dim),
    "DecoderConfig.num_heads": ("joined_kv", lambda c: c.num_heads),
    "DecoderConfig.num_kv_heads": ("joined_kv", lambda c: c.num_kv_heads),
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
    network_config: the network's T5Config or DecoderConfig, or None for
      another network.
    model: the t5x model (without its optimizer).
    feature_lengths: the train dataset's TASK_FEATURE_LENGTHS.
    optimizer: the name of OPTIMIZER's configurable(s), e.g. 'chain(clip_by_global_norm, adamw)'.
  """
  partitioner: Any
  batch_size: int
  task: Any
  model_dir: Optional[str]
  network_config: Any
  model: Any = None
  feature_lengths: Optional[Mapping[str, int]] = None
  optimizer: str = "?"


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
    optimizer = _describe(gin.query_parameter(f"{model_ref.scoped_selector}.optimizer_def"))
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
      network_config=getattr(getattr(model, "module", None), "config", None),
      model=model, feature_lengths=dict(dataset.task_feature_lengths or {}),
      optimizer=optimizer)


def _describe(value: Any) -> str:
  """A gin value as its configurables' names, e.g. 'chain(clip_by_global_norm, adamw)'."""
  if not isinstance(value, gin.config.ConfigurableReference):
    return "None" if value is None else type(value).__name__
  if value.scoped_selector.endswith("gin.macro"):
    return _describe(gin.query_parameter(f"{value.scoped_selector}.value"))
  try:
    inner = gin.query_parameter(f"{value.scoped_selector}.transformations")
  except ValueError:
    return value.configurable.name
  return f"{value.configurable.name}({', '.join(_describe(v) for v in inner)})"


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


def is_decoder(network_config: Any) -> bool:
  """Whether the network is the decoder-only student (a DecoderConfig)."""
  return isinstance(network_config, decoder_network.DecoderConfig)


def sharded_dims(network_config: Any) -> dict[str, int]:
  """{label: size} of the network dimensions rules can shard (see `logical_axes`)."""
  if is_decoder(network_config):
    return {name: int(size(network_config)) for name, (_, size) in _DECODER_DIMS.items()}
  try:
    return {name: int(size(network_config)) for name, size in _T5_DIMS.items()}
  except AttributeError:  # no network or not a T5Config: nothing to check
    return {}


def logical_axes(network_config: Any) -> dict[str, str]:
  """{label of `sharded_dims`: the logical axis name the rules shard it by}."""
  if is_decoder(network_config):
    return {name: logical for name, (logical, _) in _DECODER_DIMS.items()}
  return {name: name for name in sharded_dims(network_config)}


def mesh_axis_of(rules: Sequence[tuple[str, Any]]) -> dict[str, Any]:
  """{logical axis name: mesh axis} of the first rule for each name (flax's order)."""
  axes: dict[str, Any] = {}
  for logical, mesh_axis in rules:
    axes.setdefault(logical, mesh_axis)
  return axes


def axis_problems(dims: Mapping[str, int], rules: Sequence[tuple[str, Any]],
                  mesh_shape: Mapping[str, int],
                  logical: Optional[Mapping[str, str]] = None) -> list[str]:
  """Every sharded network dimension divides by the size of its mesh axes.

  Args:
    dims: {label: dimension size}, e.g. {'vocab': 32100}.
    rules: t5x logical axis rules, e.g. (('vocab', 'model'), ...).
    mesh_shape: {mesh axis name: size}.
    logical: {label: logical axis name} where a label is not itself the
      name, e.g. {'DecoderConfig.num_kv_heads': 'joined_kv'}.

  Returns:
    One message per dimension that pjit would refuse to shard (or, for a
    head count, that would split a head across devices).
  """
  logical = logical or {}
  rule_axes = mesh_axis_of(rules)
  axes = {}
  for name in dims:
    mesh_axis = rule_axes.get(logical.get(name, name))
    if mesh_axis is not None:
      axes[name] = (mesh_axis,) if isinstance(mesh_axis, str) else tuple(mesh_axis)
  problems = []
  for name, mesh_axes in axes.items():
    ways = math.prod(mesh_shape.get(a, 1) for a in mesh_axes)
    if dims[name] % ways:
      # Sizes of these mesh axes that every dimension sharded over them divides.
      common = math.gcd(*(dims[n] for n, a in axes.items() if a == mesh_axes))
      fits = [d for d in range(1, common + 1) if common % d == 0 and d <= ways]
      via = (f" (its heads' logical axis {logical[name]} is sharded over it; a device "
             "must hold whole heads)" if name in logical else "")
      problems.append(
          f"{name}: size {dims[name]} does not divide by the "
          f"{'x'.join(mesh_axes)} mesh axis ({ways}){via}; sizes of that axis that "
          f"divide every dimension sharded over it: {', '.join(map(str, fits))}")
  return problems


def sequence_length(network_config: Any, feature_lengths: Mapping[str, int]) -> Optional[int]:
  """The decoder-only student's sequence: inputs + targets (seqio's prefix-LM
  DecoderFeatureConverter packs both into one), or None for another network."""
  if not is_decoder(network_config):
    return None
  return sum(int(feature_lengths.get(k, 0)) for k in ("inputs", "targets"))


def sequence_problems(network_config: Any, feature_lengths: Mapping[str, int]) -> list[str]:
  """The prefix-LM sequence fits the decoder's rotary positions."""
  length = sequence_length(network_config, feature_lengths)
  if length is None or length <= network_config.max_position_embeddings:
    return []
  return [f"TASK_FEATURE_LENGTHS: inputs {feature_lengths.get('inputs', 0)} + targets "
          f"{feature_lengths.get('targets', 0)} = {length} decoder tokens exceeds "
          f"DecoderConfig.max_position_embeddings {network_config.max_position_embeddings}"]


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
  """A rough per-device training memory estimate, in bytes.

  Parameters, gradients and optimizer slots are sharded as the rules shard
  each parameter (a dimension its mesh axes do not divide stays whole);
  activations are what the backward pass keeps without rematerialisation,
  unsharded over `model` (an upper bound there), plus the float32 logits
  and their gradient. XLA's temporaries are not counted.
  """
  num_params: int
  param_bytes: int
  optimizer_slots: Optional[float]
  activation_bytes: int

  @property
  def total(self) -> float:
    slots = 2.0 if self.optimizer_slots is None else self.optimizer_slots
    return self.param_bytes * (2 + slots) + self.activation_bytes


def abstract_variables(model: Any, network_config: Any) -> Mapping[str, Any]:
  """The model's variables as shapes (`jax.eval_shape`: nothing allocated)."""
  shape = (1, 8)  # parameter shapes do not depend on the batch
  names = ["decoder_input_tokens", "decoder_target_tokens"]
  if not is_decoder(network_config):
    names.append("encoder_input_tokens")
  shapes = {n: shape for n in names}
  types = {n: jax.numpy.int32 for n in names}
  return jax.eval_shape(
      lambda: model.get_initial_variables(jax.random.PRNGKey(0), shapes, types))


def sharded_param_bytes(variables: Mapping[str, Any], rules: Sequence[tuple[str, Any]],
                        mesh_shape: Mapping[str, int]) -> tuple[int, int]:
  """(number of parameters, bytes of them held by one device)."""
  from flax import traverse_util  # pylint: disable=import-outside-toplevel
  params = traverse_util.flatten_dict(dict(variables["params"]))
  axes = traverse_util.flatten_dict(dict(variables.get("params_axes", {})))
  mesh_axis = mesh_axis_of(rules)
  count = held = 0
  for path, leaf in params.items():
    count += leaf.size
    names = getattr(axes.get(path[:-1] + (path[-1] + "_axes",)), "names", ())
    ways = 1
    for name, size in zip(names, leaf.shape):
      m = mesh_axis.get(name)
      split = math.prod(mesh_shape.get(a, 1) for a in ((m,) if isinstance(m, str) else m or ()))
      ways *= split if size % split == 0 else 1
    held += leaf.size * leaf.dtype.itemsize // ways
  return count, held


def optimizer_slots(optimizer: str) -> Optional[float]:
  """Parameter-sized float32 slots of the optimizer (None: unknown)."""
  lower = optimizer.lower()
  if "adam" in lower:
    return 2.0  # first and second moments
  if "adafactor" in lower:
    return 0.0  # factored second moments: rows + columns, negligible
  return None


def activation_bytes(network_config: Any, batch: int, feature_lengths: Mapping[str, int]) -> int:
  """What one device's backward pass keeps for `batch` examples (see MemoryEstimate)."""
  c = network_config
  act = 2 if "bfloat16" in str(getattr(c, "dtype", "")) else 4
  length = sequence_length(c, feature_lengths) or sum(feature_lengths.values())
  layers = getattr(c, "num_layers", None) or (
      getattr(c, "num_encoder_layers", 0) + getattr(c, "num_decoder_layers", 0))
  kv_heads = getattr(c, "num_kv_heads", c.num_heads)
  per_token = 4 * c.emb_dim + (2 * c.num_heads + 2 * kv_heads) * c.head_dim + 3 * c.mlp_dim
  per_layer = batch * length * per_token * act + 2 * batch * c.num_heads * length**2 * 4
  logits_length = length if is_decoder(c) else feature_lengths.get("targets", length)
  return layers * per_layer + 2 * batch * logits_length * c.vocab_size * 4


def memory_estimate(setup: T5xTrainSetup, mesh: jax.sharding.Mesh) -> Optional[MemoryEstimate]:
  """The estimate for this config, or None when the network is not one we know."""
  cfg = setup.network_config
  if not sharded_dims(cfg) or setup.model is None:
    return None
  count, held = sharded_param_bytes(abstract_variables(setup.model, cfg),
                                    setup.partitioner.logical_axis_rules, mesh.shape)
  per_device = setup.batch_size // setup.partitioner.data_mesh_size
  return MemoryEstimate(count, held, optimizer_slots(setup.optimizer),
                        activation_bytes(cfg, per_device, setup.feature_lengths or {}))


def device_memory_bytes() -> Optional[int]:
  """A local device's memory limit (None where JAX does not say, e.g. CPU)."""
  stats = jax.local_devices()[0].memory_stats() or {}
  return stats.get("bytes_limit")


def memory_problems(estimate: Optional[MemoryEstimate], limit: Optional[int]) -> list[str]:
  """The estimate exceeds the device's memory (when both are known)."""
  if estimate is None or not limit or estimate.total <= limit:
    return []
  return [f"memory: an estimated {_gib(estimate.total)} per device exceeds the "
          f"device's {_gib(limit)}; lower BATCH_SIZE or the feature lengths, or "
          "shard more over the model axis"]


def _gib(n: float) -> str:
  return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def memory_row(estimate: Optional[MemoryEstimate], optimizer: str,
               limit: Optional[int]) -> str:
  """The 'memory' row of the table."""
  if estimate is None:
    return "not estimated (network not a T5Config or DecoderConfig)"
  e = estimate
  slots = (f"{e.optimizer_slots:g} slots" if e.optimizer_slots is not None
           else "unknown, 2 slots assumed")
  slot_bytes = e.param_bytes * (2.0 if e.optimizer_slots is None else e.optimizer_slots)
  device = f"; device has {_gib(limit)}" if limit else ""
  return (f"~{_gib(e.total)} per device: parameters {_gib(e.param_bytes)} + gradients "
          f"{_gib(e.param_bytes)} + optimizer {optimizer} ({slots}) {_gib(slot_bytes)} + "
          f"activations {_gib(e.activation_bytes)} (no remat){device}")


def _network_rows(setup: T5xTrainSetup, estimate: Optional[MemoryEstimate],
                  limit: Optional[int]) -> list[tuple[str, str]]:
  """Parameters, sharded dimensions, the decoder's heads and sequence, memory."""
  cfg = setup.network_config
  dims = sharded_dims(cfg)
  logical = logical_axes(cfg)
  axes = mesh_axis_of(setup.partitioner.logical_axis_rules)
  sharded = ", ".join(f"{n} {s}/{axes[logical[n]]}" for n, s in dims.items()
                      if axes.get(logical[n]))
  rows = []
  if estimate is not None:
    rows.append(("parameters", f"{estimate.num_params / 1e6:.2f}M "
                               f"({type(cfg).__name__})"))
  rows.append(("sharded dims", sharded or "none (model axis 1 or no T5Config)"))
  if is_decoder(cfg):
    rows.append(("kv heads", f"{cfg.num_heads} query heads share {cfg.num_kv_heads} "
                             "key/value heads; both projections shard joined_kv over "
                             f"{axes.get('joined_kv')}; the decode cache's kv_heads "
                             f"over {axes.get('kv_heads') or 'nothing (no rule)'}"))
    lengths = setup.feature_lengths or {}
    rows.append(("sequence", f"inputs {lengths.get('inputs', 0)} + targets "
                             f"{lengths.get('targets', 0)} = "
                             f"{sequence_length(cfg, lengths)} decoder tokens (prefix LM), "
                             f"max_position_embeddings {cfg.max_position_embeddings}"))
  rows.append(("memory", memory_row(estimate, setup.optimizer, limit)))
  return rows


def summary_table(setup: T5xTrainSetup, mesh: jax.sharding.Mesh,
                  estimate: Optional[MemoryEstimate] = None,
                  limit: Optional[int] = None) -> str:
  """The short table printed on success."""
  data = setup.partitioner.data_mesh_size
  layout = setup.partitioner.get_data_layout(setup.batch_size)
  devices = jax.devices()
  kinds = sorted({d.device_kind for d in devices})
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
      *_network_rows(setup, estimate, limit),
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
                     mesh.shape, logical_axes(setup.network_config)),
      *sequence_problems(setup.network_config, setup.feature_lengths or {}),
  ]
  estimate, limit = None, device_memory_bytes()
  if not problems:  # the estimate needs a batch that divides
    estimate = memory_estimate(setup, mesh)
    problems = memory_problems(estimate, limit)
  if problems:
    raise ConfigError("; ".join(problems))
  print(f"pad_jax.preflight: OK, t5x.train can start with this config\n"
        f"{summary_table(setup, mesh, estimate, limit)}")
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
