"""Hooks that plug PaD's training recipe into an unmodified `t5x.train`.

Everything here is wired in by `gin_configs/runs/pad_finetune.gin` (and
`pad_eval.gin`) through arguments that `t5x.train.train` / `t5x.eval.evaluate`
already accept, so t5x's code stays untouched:

* `EarlyStopping` -- a `t5x.trainer.BaseAction` run after every inference
  evaluation: it tracks the best validation value, writes
  `<model_dir>/early_stopping.json` (so a restarted run keeps counting) and
  asks t5x to stop after `patience` evaluations without improvement. Keeping
  the best checkpoint is left to t5x's Orbax checkpoint manager
  (`metric_name_to_monitor`, see `tensorboard_metric_name`).
* `get_train_dataset` / `get_training_eval_datasets_checked` -- dataset
  functions preceded by a truncation count: examples longer than the
  feature lengths are counted and reported, and the run fails when more than
  the allowed fraction would be truncated. The training stream is tokenized
  once and served from memory so its iterator can be checkpointed.
* `verify_task_and_vocabulary` -- a clear error for an unknown task name, then
  t5x's own vocabulary check.
* `CheckedTrainStateInitializer` -- compares the parameter shapes stored in
  the checkpoint that is about to be restored with the model's before t5x
  restores it, and names the first mismatching parameter.
* `steps_for_epochs`, `learning_rate_schedule`, `program_task` -- small
  gin-callable values (run length, the optimizer's schedule, a program
  dataset registered from the command line).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Mapping, Optional

from absl import logging
import jax
import numpy as np
import optax
import seqio
from t5x import checkpoints
from t5x import trainer as trainer_lib
from t5x import utils
import tensorflow as tf

gfile = tf.io.gfile

EARLY_STOPPING_FILE = "early_stopping.json"
TRUNCATION_REPORT_PREFIX = "truncation"


# ---------------------------------------------------------------------------
# Task lookup with a readable error.
# ---------------------------------------------------------------------------


def task_name(task: str | seqio.Task | seqio.Mixture) -> str:
  """The name of a task given by name or as the object (t5x accepts both)."""
  return task if isinstance(task, str) else task.name


def get_task(name: str | seqio.Task | seqio.Mixture
            ) -> seqio.Task | seqio.Mixture:
  """Returns the registered seqio task or mixture `name`, or fails clearly."""
  if not isinstance(name, str):
    return name
  try:
    return seqio.get_mixture_or_task(name)
  except ValueError:
    pass
  known = sorted(
      n
      for n in (*seqio.TaskRegistry.names(), *seqio.MixtureRegistry.names())
      if n.startswith("pad_")
  )
  raise ValueError(
      f"MIXTURE_OR_TASK_NAME: no seqio task or mixture named {name!r}. "
      f"Registered pad tasks: {', '.join(known) or '(none)'}. Tasks are "
      "registered by `import tasks` (the gin files in gin_configs/runs do "
      "this); a program dataset becomes a task with "
      "tasks.program_tasks.register_program_task(name, jsonl_path)."
  )


def checked_task_name(name: str) -> str:
  """Returns `name` after checking that the task exists (for gin files)."""
  get_task(name)
  return name


def program_task(
    jsonl_path: str,
    name: str = "pad_programs",
    vocabulary: Optional[seqio.Vocabulary] = None,
    validation_fraction: float = 0.05,
    seed: int = 0,
) -> str:
  """Registers a program-dataset JSONL as a task and returns its name.

  For the command line: `--gin.MIXTURE_OR_TASK_NAME="@program_task()"
  --gin.program_task.jsonl_path="'programs.jsonl'"` trains on a file without
  writing a registration module. `pad_finetune.gin` binds `vocabulary` to the
  model file's `VOCABULARY`, so the task always matches the model.

  Args:
    jsonl_path: a program-dataset JSONL file.
    name: the task name.
    vocabulary: the model's vocabulary (None: CodeT5's).
    validation_fraction: share of questions held out as `validation`.
    seed: seed of the train/validation carving.

  Returns:
    `name`.
  """
  from tasks import program_tasks  # pylint: disable=g-import-not-at-top

  program_tasks.register_program_task(
      name, jsonl_path, vocabulary=vocabulary,
      validation_fraction=validation_fraction, seed=seed,
  )
  return name


def verify_task_and_vocabulary(cfg: utils.DatasetConfig, model: Any) -> None:
  """`verify_matching_vocabs_fn` for t5x: task exists and vocabularies match."""
  get_task(cfg.mixture_or_task_name)
  try:
    utils.verify_matching_vocabs(cfg, model)
  except ValueError as e:
    raise ValueError(
        f"model/task mismatch for task "
        f"{task_name(cfg.mixture_or_task_name)!r}: {e} "
        "The model gin file and the task must use the same vocabulary."
    ) from None


def _sub_tasks(task: seqio.Task | seqio.Mixture) -> list[seqio.Task]:
  if isinstance(task, seqio.Mixture):
    return list(task.tasks)
  return [task]


# ---------------------------------------------------------------------------
# Run length and learning rate.
# ---------------------------------------------------------------------------


def count_examples(mixture_or_task_name: str, split: str) -> int:
  """Number of examples in `split` of a task (sum over a mixture's tasks)."""
  total = 0
  for task in _sub_tasks(get_task(mixture_or_task_name)):
    n = task.num_input_examples(split)
    if n is None:  # Count raw examples; no preprocessing needed.
      ds = task.source.get_dataset(split=split, shuffle=False)
      n = int(ds.reduce(0, lambda count, _: count + 1))
    total += int(n)
  return total


def steps_for_epochs(
    mixture_or_task_name: str,
    epochs: float,
    batch_size: int,
    split: str = "train",
) -> int:
  """Training steps that cover `epochs` passes over `split` (at least 1).

  Used as the default `TRAIN_STEPS` of `pad_finetune.gin` ("up to 50 epochs");
  `--gin.TRAIN_STEPS=N` replaces it.

  Args:
    mixture_or_task_name: registered seqio task or mixture.
    epochs: number of passes over the split.
    batch_size: global batch size (examples per step, no packing).
    split: the split to count.

  Returns:
    ceil(epochs * examples / batch_size).
  """
  n = count_examples(mixture_or_task_name, split)
  if n == 0:
    raise ValueError(
        f"task {mixture_or_task_name!r} split {split!r} has no examples"
    )
  steps = max(1, int(np.ceil(epochs * n / batch_size)))
  logging.info(
      "%s/%s: %d examples, %s epochs at batch %d -> %d steps",
      mixture_or_task_name, split, n, epochs, batch_size, steps,
  )
  return steps


def learning_rate_schedule(
    peak_value: float,
    warmup_steps: int,
    total_steps: int,
    decay: str = "linear",
) -> optax.Schedule:
  """Linear warmup to `peak_value`, then linear decay to 0 or constant.

  The same schedule object is given to the optax optimizer (which applies it)
  and to `t5x.trainer.Trainer.learning_rate_fn` (which logs it to
  TensorBoard as `learning_rate`).

  Args:
    peak_value: learning rate after warmup.
    warmup_steps: steps of linear warmup from 0.
    total_steps: last step of the run (end of the decay).
    decay: "linear" (to 0 at `total_steps`) or "constant".

  Returns:
    An optax schedule `step -> learning rate`.
  """
  if decay not in ("linear", "constant"):
    raise ValueError(f"decay must be 'linear' or 'constant', got {decay!r}")
  warmup_steps = int(warmup_steps)
  warmup = optax.linear_schedule(0.0, peak_value, max(warmup_steps, 1))
  if decay == "constant":
    after = optax.constant_schedule(peak_value)
  else:
    after = optax.linear_schedule(
        peak_value, 0.0, max(int(total_steps) - warmup_steps, 1)
    )
  if warmup_steps <= 0:
    return after
  return optax.join_schedules([warmup, after], [warmup_steps])


# ---------------------------------------------------------------------------
# Truncation check.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class TruncationReport:
  """How many examples of a split are longer than the feature lengths.

  Lengths are token counts after the task's preprocessors (including EOS),
  i.e. what the feature converter would trim.
  """

  task: str
  split: str
  feature_lengths: dict[str, int]
  examples: int = 0
  truncated: dict[str, int] = dataclasses.field(default_factory=dict)
  longest: dict[str, int] = dataclasses.field(default_factory=dict)
  truncated_ids: dict[str, list[str]] = dataclasses.field(default_factory=dict)

  def fraction(self, feature: str) -> float:
    return self.truncated.get(feature, 0) / max(self.examples, 1)

  def summary(self) -> str:
    parts = []
    for f, limit in self.feature_lengths.items():
      parts.append(
          f"{f}: {self.truncated.get(f, 0)}/{self.examples} examples longer "
          f"than {limit} tokens (longest {self.longest.get(f, 0)})"
      )
    return f"{self.task}/{self.split}: " + "; ".join(parts)


@dataclasses.dataclass
class TokenizedSplit:
  """A split tokenized by its task's preprocessors, held in memory.

  `features[f][i]` are the token ids of feature `f` of example `i`, untrimmed
  (including the EOS the task appends).
  """

  features: dict[str, list[np.ndarray]]
  report: TruncationReport


_TOKENIZED_CACHE: dict[tuple[Any, ...], TokenizedSplit] = {}


def tokenize_split(
    mixture_or_task_name: str | seqio.Task,
    split: str,
    feature_lengths: Mapping[str, int],
    use_cached: bool = False,
    max_ids: int = 5,
) -> TokenizedSplit:
  """Tokenizes a whole split once and counts what `feature_lengths` truncate.

  Args:
    mixture_or_task_name: a seqio task (a mixture is not supported here).
    split: the split.
    feature_lengths: the run's TASK_FEATURE_LENGTHS.
    use_cached: read seqio's offline cache.
    max_ids: example ids to keep per feature in the report.

  Returns:
    The tokens and the truncation report.
  """
  name = task_name(mixture_or_task_name)
  key = (name, split, tuple(sorted(feature_lengths.items())), use_cached)
  if key in _TOKENIZED_CACHE:
    return _TOKENIZED_CACHE[key]
  task = get_task(mixture_or_task_name)
  report = TruncationReport(
      name, split, dict(feature_lengths),
      truncated={f: 0 for f in feature_lengths},
      longest={f: 0 for f in feature_lengths},
      truncated_ids={f: [] for f in feature_lengths},
  )
  features = {f: [] for f in feature_lengths}
  ds = task.get_dataset(
      sequence_length=None, split=split, shuffle=False, num_epochs=1,
      use_cached=use_cached,
  )
  for ex in ds.as_numpy_iterator():
    report.examples += 1
    for f, limit in feature_lengths.items():
      tokens = np.asarray(ex[f], np.int32)
      features[f].append(tokens)
      report.longest[f] = max(report.longest[f], len(tokens))
      if len(tokens) > limit:
        report.truncated[f] += 1
        if len(report.truncated_ids[f]) < max_ids:
          ex_id = ex.get("id", report.examples - 1)
          if isinstance(ex_id, bytes):
            ex_id = ex_id.decode("utf-8", "replace")
          report.truncated_ids[f].append(str(ex_id))
  out = TokenizedSplit(features, report)
  _TOKENIZED_CACHE[key] = out
  return out


def count_truncated(
    mixture_or_task_name: str | seqio.Task | seqio.Mixture,
    split: str,
    feature_lengths: Mapping[str, int],
    use_cached: bool = False,
) -> TruncationReport:
  """Counts the examples of a split that `feature_lengths` would truncate."""
  task = get_task(mixture_or_task_name)
  reports = [
      tokenize_split(t, split, feature_lengths, use_cached).report
      for t in _sub_tasks(task) if split in t.splits
  ]
  total = TruncationReport(task.name, split, dict(feature_lengths))
  for f in feature_lengths:
    total.truncated[f] = sum(r.truncated[f] for r in reports)
    total.longest[f] = max([r.longest[f] for r in reports], default=0)
    total.truncated_ids[f] = [i for r in reports for i in r.truncated_ids[f]]
  total.examples = sum(r.examples for r in reports)
  return total


def check_truncation(
    cfg: utils.DatasetConfig,
    max_truncated_fraction: Mapping[str, float],
    report_dir: Optional[str] = None,
) -> TruncationReport:
  """Counts truncated examples of `cfg`, writes a report, fails if too many.

  Args:
    cfg: the t5x dataset config (task, split, feature lengths).
    max_truncated_fraction: per feature, the largest fraction of examples
      that may be truncated; a feature not listed allows none.
    report_dir: where to write `truncation-<task>-<split>.json` (process 0).

  Returns:
    The report.

  Raises:
    ValueError: when a feature's truncated fraction exceeds the allowed one.
  """
  if not cfg.task_feature_lengths:
    return TruncationReport(task_name(cfg.mixture_or_task_name), cfg.split, {})
  report = count_truncated(
      cfg.mixture_or_task_name, cfg.split, cfg.task_feature_lengths,
      use_cached=cfg.use_cached,
  )
  if report_dir and jax.process_index() == 0:
    gfile.makedirs(report_dir)
    path = os.path.join(
        report_dir,
        f"{TRUNCATION_REPORT_PREFIX}-{report.task}-{cfg.split}.json",
    )
    with gfile.GFile(path, "w") as f:
      json.dump(dataclasses.asdict(report), f, indent=2)
  if any(report.truncated.values()):
    logging.warning("Truncation: %s", report.summary())
  else:
    logging.info("Truncation: %s", report.summary())
  for f in report.feature_lengths:
    allowed = max_truncated_fraction.get(f, 0.0)
    if report.fraction(f) > allowed:
      raise ValueError(
          f"TASK_FEATURE_LENGTHS too short for the data: {report.summary()}. "
          f"{report.fraction(f):.2%} of '{f}' would be truncated (allowed "
          f"{allowed:.2%}; first ids: {report.truncated_ids[f]}). Raise "
          f"TASK_FEATURE_LENGTHS['{f}'] (e.g. --gin.TASK_FEATURE_LENGTHS="
          f"\"{{'inputs': ..., 'targets': ...}}\") or allow more with "
          "--gin.MAX_TRUNCATED_FRACTION=\"{...}\"."
      )
  return report


def _trim(tokens: np.ndarray, length: int, eos_id: Optional[int]
         ) -> np.ndarray:
  """Trims like `seqio.preprocessors.append_eos_after_trim`: EOS stays last."""
  if len(tokens) <= length:
    return tokens
  if eos_id is not None and len(tokens) and tokens[-1] == eos_id:
    return np.concatenate([tokens[: length - 1], [eos_id]]).astype(np.int32)
  return tokens[:length]


def _in_memory_dataset(columns: Mapping[str, list[np.ndarray]]
                      ) -> tf.data.Dataset:
  """A dataset of variable-length int32 features built from pure TF ops."""
  tensors = {}
  for f, rows in columns.items():
    lengths = np.array([len(r) for r in rows], np.int32)
    padded = np.zeros((len(rows), max(lengths.max(initial=0), 1)), np.int32)
    for i, r in enumerate(rows):
      padded[i, : len(r)] = r
    tensors[f] = padded
    tensors[f + "_length"] = lengths
  ds = tf.data.Dataset.from_tensor_slices(tensors)
  return ds.map(
      lambda ex: {f: ex[f][: ex[f + "_length"]] for f in columns},
      num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True,
  )


def get_train_dataset(
    cfg: utils.DatasetConfig,
    shard_id: int,
    num_shards: int,
    feature_converter_cls: Callable[..., seqio.FeatureConverter],
    num_epochs: Optional[int] = None,
    continue_from_last_checkpoint: bool = False,
    *,
    max_truncated_fraction: Optional[Mapping[str, float]] = None,
    report_dir: Optional[str] = None,
) -> tf.data.Dataset:
  """`get_dataset_fn` for `t5x.train`: truncation check + in-memory tokens.

  The split is tokenized once by the task's own preprocessors (counting what
  the feature lengths truncate, see `check_truncation`), trimmed as seqio
  would, and served from memory: seeded shuffle, repeat, t5x's feature
  converter and batching are then pure TF ops. That makes the data order a
  function of `cfg.seed` alone and lets t5x checkpoint the iterator
  (`SaveCheckpointConfig.save_dataset`) even though the tokenizer runs in
  Python (a `tf.py_function` cannot be serialized), and tokenization is done
  once instead of every epoch.

  Args:
    cfg: the train dataset config; a Mixture falls back to
      `t5x.utils.get_dataset` (no iterator checkpoint with Python tokenizers).
    shard_id: this host's data shard.
    num_shards: number of data shards (hosts that read distinct data).
    feature_converter_cls: the model's feature converter.
    num_epochs: None repeats forever.
    continue_from_last_checkpoint: must be False (as in t5x).
    max_truncated_fraction: see `check_truncation`.
    report_dir: see `check_truncation`.

  Returns:
    Batches of `cfg.batch_size // num_shards` examples.
  """
  check_truncation(cfg, max_truncated_fraction or {}, report_dir)
  task = get_task(cfg.mixture_or_task_name)
  if isinstance(task, seqio.Mixture) or continue_from_last_checkpoint:
    return utils.get_dataset(
        cfg, shard_id, num_shards, feature_converter_cls,
        num_epochs=num_epochs,
        continue_from_last_checkpoint=continue_from_last_checkpoint,
    )
  if cfg.batch_size % num_shards:
    raise ValueError(
        f"BATCH_SIZE {cfg.batch_size} must be divisible by the number of data "
        f"shards {num_shards}"
    )
  tokens = tokenize_split(
      task, cfg.split, cfg.task_feature_lengths, cfg.use_cached
  ).features
  columns = {}
  for f, rows in tokens.items():
    feature = task.output_features[f]
    eos = feature.vocabulary.eos_id if feature.add_eos else None
    limit = cfg.task_feature_lengths[f]
    # Same sharding as seqio: every num_shards-th example from shard_id.
    columns[f] = [_trim(r, limit, eos) for r in rows[shard_id::num_shards]]
  n = len(next(iter(columns.values())))
  if n == 0:
    raise ValueError(f"{task.name}/{cfg.split}: no examples for shard {shard_id}")
  ds = _in_memory_dataset(columns)
  if cfg.shuffle:
    seed = 0 if cfg.seed is None else cfg.seed
    ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat(num_epochs)
  converter = feature_converter_cls(
      pack=cfg.pack, use_custom_packing_ops=cfg.use_custom_packing_ops
  )
  ds = converter(ds, task_feature_lengths=cfg.task_feature_lengths)
  logging.info(
      "%s/%s: %d examples in memory for shard %d/%d, seed %s", task.name,
      cfg.split, n, shard_id, num_shards, cfg.seed,
  )
  return ds.batch(cfg.batch_size // num_shards, drop_remainder=True)


def get_training_eval_datasets_checked(
    cfg: utils.DatasetConfig,
    shard_id: int,
    num_shards: int,
    eval_steps: int,
    feature_converter_cls: Callable[..., seqio.FeatureConverter],
    deterministic: bool = False,
    model_dir: Optional[str] = None,
    start_step: int = 0,
    *,
    max_truncated_fraction: Optional[Mapping[str, float]] = None,
    report_dir: Optional[str] = None,
):
  """`t5x.utils.get_training_eval_datasets` preceded by `check_truncation`."""
  check_truncation(cfg, max_truncated_fraction or {}, report_dir)
  return utils.get_training_eval_datasets(
      cfg, shard_id, num_shards, eval_steps, feature_converter_cls,
      deterministic=deterministic, model_dir=model_dir, start_step=start_step,
  )


# ---------------------------------------------------------------------------
# Model/checkpoint compatibility.
# ---------------------------------------------------------------------------


def _checkpoint_param_shapes(ckpt_dir: str) -> dict[str, tuple[int, ...]]:
  """Shapes of the `target` (model parameter) arrays stored in a checkpoint.

  Supports t5x's Orbax layout (`checkpoint_N/state`) and legacy t5x
  checkpoints (a `checkpoint` msgpack file).
  """
  state_dir = os.path.join(ckpt_dir, "state")
  if gfile.isdir(state_dir):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

    from etils import epath  # pylint: disable=g-import-not-at-top

    meta = ocp.PyTreeCheckpointHandler().metadata(epath.Path(state_dir))
    tree = getattr(meta, "tree", meta)
  else:
    tree = checkpoints.load_t5x_checkpoint(ckpt_dir, lazy_parameters=True)
  target = tree.get("target", {}) if isinstance(tree, Mapping) else {}
  shapes = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(
      target, is_leaf=lambda x: hasattr(x, "shape")
  )[0]:
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    if hasattr(leaf, "shape") and leaf.shape is not None:
      shapes[name] = tuple(int(d) for d in leaf.shape)
  return shapes


def _model_param_shapes(train_state_shape: Any) -> dict[str, tuple[int, ...]]:
  params = train_state_shape.params
  out = {}
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  for path, leaf in flat:
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    out[name] = tuple(int(d) for d in leaf.shape)
  return out


def check_checkpoint_matches_model(
    ckpt_dir: str, train_state_shape: Any
) -> None:
  """Raises a one-line error naming the first parameter that does not fit.

  Args:
    ckpt_dir: a t5x checkpoint directory (`.../checkpoint_N`).
    train_state_shape: `TrainStateInitializer.global_train_state_shape`.

  Raises:
    ValueError: a parameter is missing from the checkpoint, unknown to the
      model, or has another shape.
  """
  model = _model_param_shapes(train_state_shape)
  try:
    stored = _checkpoint_param_shapes(ckpt_dir)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("Could not read parameter shapes of %s: %s", ckpt_dir, e)
    return
  if not stored:
    return
  hint = (
      "the checkpoint was made for another model config: use the model gin "
      "file that matches it (e.g. models/codet5_small.gin for a converted "
      "codet5-small) or a fresh MODEL_DIR."
  )
  for name, shape in sorted(model.items()):
    if name not in stored:
      raise ValueError(
          f"{ckpt_dir}: parameter {name!r} of the model is missing from the "
          f"checkpoint; {hint}"
      )
    if stored[name] != shape:
      raise ValueError(
          f"{ckpt_dir}: parameter {name!r} has shape {stored[name]} in the "
          f"checkpoint but {shape} in the model; {hint}"
      )
  extra = sorted(set(stored) - set(model))
  if extra:
    raise ValueError(
        f"{ckpt_dir}: checkpoint parameter {extra[0]!r} (and "
        f"{len(extra) - 1} more) does not exist in the model; {hint}"
    )


def _checkpoint_to_restore(
    model_dir: Optional[str], checkpoint_path: Optional[str]
) -> Optional[str]:
  """The checkpoint t5x will restore: latest in model_dir, else the path."""
  if model_dir and gfile.isdir(model_dir):
    step = checkpoints.latest_step(model_dir)
    if step is not None:
      return checkpoints.get_checkpoint_dir(model_dir, step)
  if checkpoint_path:
    if not gfile.exists(checkpoint_path):
      raise ValueError(
          f"checkpoint path {checkpoint_path!r} does not exist "
          "(INITIAL_CHECKPOINT_PATH / CHECKPOINT_PATH)"
      )
    step = None
    if not os.path.basename(checkpoint_path.rstrip("/")).startswith(
        "checkpoint_"
    ):
      step = checkpoints.latest_step(checkpoint_path)
    if step is not None:
      return checkpoints.get_checkpoint_dir(checkpoint_path, step)
    return checkpoint_path
  return None


class CheckedTrainStateInitializer(utils.TrainStateInitializer):
  """`TrainStateInitializer` that checks the checkpoint to be restored.

  t5x restores parameters after constructing the initializer; a checkpoint
  from another model config then fails deep inside Orbax. This subclass
  compares shapes first and names the offending parameter.
  """

  def __init__(
      self,
      optimizer_def,
      init_fn,
      input_shapes,
      partitioner,
      input_types=None,
      *,
      model_dir: Optional[str] = None,
      checkpoint_path: Optional[str] = None,
  ):
    super().__init__(
        optimizer_def=optimizer_def, init_fn=init_fn,
        input_shapes=input_shapes, partitioner=partitioner,
        input_types=input_types,
    )
    ckpt = _checkpoint_to_restore(model_dir, checkpoint_path)
    if ckpt:
      check_checkpoint_matches_model(ckpt, self.global_train_state_shape)


# ---------------------------------------------------------------------------
# Early stopping on the validation metric.
# ---------------------------------------------------------------------------


def tensorboard_metric_name(task: str, metric: str) -> str:
  """The `{run}/{tag}` name t5x's best-checkpoint keeping reads.

  `t5x.eval.InferenceEvaluator` logs to `<model_dir>/inference_eval` and
  `seqio.TensorBoardLogger` writes `<task>/eval/<metric>` below it.
  """
  return f"inference_eval/{task_name(task)}/eval/{metric}"


def _scalar(value: Any) -> Optional[float]:
  value = getattr(value, "value", value)
  try:
    return float(np.asarray(value))
  except (TypeError, ValueError):
    return None


class EarlyStopping(trainer_lib.BaseAction):
  """Stops training after `patience` evaluations without a new best value.

  Unlike `t5x.trainer.EarlyStoppingAction` (which compares consecutive
  values and forgets its history on restart) this compares with the best
  value so far and persists the history in `<model_dir>/early_stopping.json`,
  so a run killed and restarted keeps counting. The JSON also names the best
  step, whose checkpoint t5x's checkpoint manager keeps.
  """

  def __init__(
      self,
      task: str,
      metric: str = "accuracy",
      mode: str = "max",
      patience: int = 3,
      min_delta: float = 0.0,
      model_dir: Optional[str] = None,
  ):
    """Constructs the action.

    Args:
      task: the seqio task whose metric is monitored.
      metric: the metric name reported by the task's metric function.
      mode: "max" (higher is better) or "min".
      patience: evaluations without improvement before stopping; 0 disables.
      min_delta: an improvement must exceed this.
      model_dir: where the state file lives (None: in memory only).
    """
    if mode not in ("max", "min"):
      raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    self.task, self.metric, self.mode = task_name(task), metric, mode
    self.patience, self.min_delta = int(patience), float(min_delta)
    self.path = (
        os.path.join(model_dir, EARLY_STOPPING_FILE) if model_dir else None
    )
    self.history: list[tuple[int, float]] = []
    if self.path and gfile.exists(self.path):
      with gfile.GFile(self.path) as f:
        state = json.load(f)
      self.history = [(int(s), float(v)) for s, v in state.get("history", [])]

  def _better(self, a: float, b: float) -> bool:
    if self.mode == "max":
      return a > b + self.min_delta
    return a < b - self.min_delta

  def state(self) -> dict[str, Any]:
    """Best step/value and evaluations since the best, from the history."""
    best_step, best, since = None, None, 0
    for step, value in self.history:
      if best is None or self._better(value, best):
        best_step, best, since = step, value, 0
      else:
        since += 1
    return {
        "task": self.task, "metric": self.metric, "mode": self.mode,
        "patience": self.patience, "best_step": best_step, "best_value": best,
        "evals_since_best": since, "history": self.history,
        "stop": bool(self.patience and since >= self.patience),
    }

  def _save(self, state: Mapping[str, Any]) -> None:
    if not self.path:
      return
    tmp = self.path + ".tmp"
    with gfile.GFile(tmp, "w") as f:
      json.dump(state, f, indent=2)
    gfile.rename(tmp, self.path, overwrite=True)

  def run(
      self,
      train_state: Any,
      metrics_by_task: Mapping[str, Mapping[str, Any]],
  ) -> bool:
    value = _scalar(metrics_by_task.get(self.task, {}).get(self.metric))
    if value is None:
      logging.warning(
          "EarlyStopping: no metric %r for task %r (got %s); not counted.",
          self.metric, self.task,
          {t: sorted(m) for t, m in metrics_by_task.items()},
      )
      return False
    step = int(np.asarray(utils.get_local_data(train_state.step)))
    # After a restart the same step may be evaluated again: replace it.
    self.history = [(s, v) for s, v in self.history if s < step]
    self.history.append((step, value))
    state = self.state()
    self._save(state)
    logging.info(
        "EarlyStopping: step %d %s/%s=%.4f best %.4f at step %s, %d eval(s) "
        "without improvement (patience %d)", step, self.task, self.metric,
        value, state["best_value"], state["best_step"],
        state["evals_since_best"], self.patience,
    )
    if state["stop"]:
      logging.warning(
          "EarlyStopping: stopping, %s/%s has not improved for %d "
          "evaluations; best %.4f at step %d.", self.task, self.metric,
          state["evals_since_best"], state["best_value"], state["best_step"],
      )
    return state["stop"]


def read_early_stopping(model_dir: str) -> Optional[dict[str, Any]]:
  """The early-stopping state of a run directory, or None."""
  path = os.path.join(model_dir, EARLY_STOPPING_FILE)
  if not gfile.exists(path):
    return None
  with gfile.GFile(path) as f:
    return json.load(f)
