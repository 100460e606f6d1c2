"""Datasets for t5x: the truncation count, and the train split from memory.

* `check_truncation` counts the examples longer than the feature lengths,
  writes `truncation-<task>-<split>.json` and fails when more than the
  allowed fraction would be truncated; both dataset functions run it first.
* `get_train_dataset` (t5x's `get_dataset_fn`) tokenizes the training split
  once and serves it from memory, so its iterator can be checkpointed.
* `get_training_eval_datasets_checked` (t5x's `train_eval_get_dataset_fn`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Optional

from absl import logging
import jax
import numpy as np
import seqio
from t5x import utils
import tensorflow as tf

from pad_jax import atomic
from pad_jax.t5x_hooks import task_lookup

TRUNCATION_REPORT_PREFIX = "truncation"


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

  def count(self, example: Mapping[str, Any], tokens: Mapping[str, np.ndarray],
            max_ids: int) -> None:
    """Adds one example (its untrimmed `tokens` per feature)."""
    self.examples += 1
    for f, limit in self.feature_lengths.items():
      self.longest[f] = max(self.longest.get(f, 0), len(tokens[f]))
      if len(tokens[f]) > limit:
        self.truncated[f] = self.truncated.get(f, 0) + 1
        ids = self.truncated_ids.setdefault(f, [])
        if len(ids) < max_ids:
          ex_id = example.get("id", self.examples - 1)
          if isinstance(ex_id, bytes):
            ex_id = ex_id.decode("utf-8", "replace")
          ids.append(str(ex_id))


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
  name = task_lookup.task_name(mixture_or_task_name)
  key = (name, split, tuple(sorted(feature_lengths.items())), use_cached)
  if key in _TOKENIZED_CACHE:
    return _TOKENIZED_CACHE[key]
  task = task_lookup.get_task(mixture_or_task_name)
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
    tokens = {f: np.asarray(ex[f], np.int32) for f in feature_lengths}
    report.count(ex, tokens, max_ids)
    for f, t in tokens.items():
      features[f].append(t)
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
  task = task_lookup.get_task(mixture_or_task_name)
  reports = [
      tokenize_split(t, split, feature_lengths, use_cached).report
      for t in task_lookup.sub_tasks(task) if split in t.splits
  ]
  total = TruncationReport(task.name, split, dict(feature_lengths))
  for f in feature_lengths:
    total.truncated[f] = sum(r.truncated[f] for r in reports)
    total.longest[f] = max([r.longest[f] for r in reports], default=0)
    total.truncated_ids[f] = [i for r in reports for i in r.truncated_ids[f]]
  total.examples = sum(r.examples for r in reports)
  return total


def write_truncation_report(report: TruncationReport, report_dir: str) -> str:
  """Writes `<report_dir>/truncation-<task>-<split>.json`; returns the path."""
  path = os.path.join(
      report_dir,
      f"{TRUNCATION_REPORT_PREFIX}-{report.task}-{report.split}.json",
  )
  atomic.write_json(path, dataclasses.asdict(report))
  return path


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
    return TruncationReport(
        task_lookup.task_name(cfg.mixture_or_task_name), cfg.split, {})
  report = count_truncated(
      cfg.mixture_or_task_name, cfg.split, cfg.task_feature_lengths,
      use_cached=cfg.use_cached,
  )
  if report_dir and jax.process_index() == 0:
    write_truncation_report(report, report_dir)
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


def trim(tokens: np.ndarray, length: int, eos_id: Optional[int]
        ) -> np.ndarray:
  """Trims like `seqio.preprocessors.append_eos_after_trim`: EOS stays last."""
  if len(tokens) <= length:
    return tokens
  if eos_id is not None and len(tokens) and tokens[-1] == eos_id:
    return np.concatenate([tokens[: length - 1], [eos_id]]).astype(np.int32)
  return tokens[:length]


def in_memory_dataset(columns: Mapping[str, list[np.ndarray]]
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


def _shard_columns(task: seqio.Task, cfg: utils.DatasetConfig, shard_id: int,
                   num_shards: int) -> dict[str, list[np.ndarray]]:
  """This shard's examples of `cfg.split`, trimmed as seqio would trim them."""
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
    columns[f] = [trim(r, limit, eos) for r in rows[shard_id::num_shards]]
  if not next(iter(columns.values()), []):
    raise ValueError(
        f"{task.name}/{cfg.split}: no examples for shard {shard_id}")
  return columns


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
  task = task_lookup.get_task(cfg.mixture_or_task_name)
  if isinstance(task, seqio.Mixture) or continue_from_last_checkpoint:
    return utils.get_dataset(
        cfg, shard_id, num_shards, feature_converter_cls,
        num_epochs=num_epochs,
        continue_from_last_checkpoint=continue_from_last_checkpoint,
    )
  columns = _shard_columns(task, cfg, shard_id, num_shards)
  n = len(next(iter(columns.values())))
  ds = in_memory_dataset(columns)
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
