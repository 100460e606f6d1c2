"""Datasets for t5x: the truncation count, and the train split from memory.

* `check_truncation` counts the examples longer than the feature lengths,
  writes `truncation-<task>-<split>.json` and fails when more than the
  allowed fraction would be truncated; both dataset functions run it first.
* `get_train_dataset` (t5x's `get_dataset_fn`) tokenizes the training split
  once and serves it from memory, so its iterator can be checkpointed; with
  `use_cached=True` it reads seqio's pre-tokenized cache instead (no
  tokenization at start-up; docs/scaling.md).
* `tokenize_split` encodes whole batches with the `tokenizers` library when a
  task's preprocessors are pad-jax's standard chain (the same ids as seqio's
  one-example-at-a-time `tokenize`, tests/t5x_hooks_datasets_test.py).
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
from pad_jax.student import vocab as vocab_lib
from pad_jax.t5x_hooks import task_lookup
from tasks import cached_program_tasks
from tasks import preprocessors as task_preprocessors

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
    self.count_lengths(example.get("id"), {f: len(tokens[f]) for f in self.feature_lengths},
                       max_ids)

  def count_lengths(self, example_id: Any, lengths: Mapping[str, int], max_ids: int) -> None:
    """Adds one example given its untrimmed token count per feature."""
    self.examples += 1
    for f, limit in self.feature_lengths.items():
      self.longest[f] = max(self.longest.get(f, 0), int(lengths[f]))
      if lengths[f] > limit:
        self.truncated[f] = self.truncated.get(f, 0) + 1
        ids = self.truncated_ids.setdefault(f, [])
        if len(ids) < max_ids:
          ex_id = self.examples - 1 if example_id is None else example_id
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
  if not use_cached and _batch_tokenizable(task, feature_lengths):
    example_ids, features = _tokenize_batched(task, split, feature_lengths)
    for i, ex_id in enumerate(example_ids):
      report.count_lengths(ex_id, {f: len(features[f][i]) for f in features}, max_ids)
  else:
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


def _batch_tokenizable(task: seqio.Task, feature_lengths: Mapping[str, int]) -> bool:
  """Whether `task` tokenizes as pad-jax's chain does, with a batch encoder.

  The chain: `tokenize` (or `cached_program_tasks.tokenize_batched`),
  `add_bos`, an optional cache placeholder, `append_eos_after_trim`.
  """
  chain = [p for p in task.preprocessors if not isinstance(p, seqio.CacheDatasetPlaceholder)]
  chain = [seqio.preprocessors.tokenize if p is cached_program_tasks.tokenize_batched else p
           for p in chain]
  return (chain == task_preprocessors.tokenize_preprocessors()
          and set(feature_lengths) <= set(task.output_features)
          and all(hasattr(task.output_features[f].vocabulary, "encode_batch")
                  for f in feature_lengths))


def _tokenize_batched(task: seqio.Task, split: str, feature_lengths: Mapping[str, int],
                      batch_size: int = 8192) -> tuple[list[Any], dict[str, list[np.ndarray]]]:
  """(example ids, tokens per feature) of a split, encoded a batch at a time.

  The ids of `tokenize -> add_bos -> append_eos_after_trim` without a
  sequence length: `[BOS] + ids + [EOS]` for inputs, `ids + [EOS]` for targets.
  """
  texts: dict[str, list[str]] = {f: [] for f in feature_lengths}
  example_ids: list[Any] = []
  ds = task.source.get_dataset(split=split, shuffle=False)
  for batch in ds.batch(batch_size).as_numpy_iterator():
    example_ids.extend(batch["id"] if "id" in batch else [None] * len(batch[next(iter(texts))]))
    for f in texts:
      texts[f].extend(t.decode("utf-8") for t in batch[f])
  features = {}
  for f, rows in texts.items():
    feature = task.output_features[f]
    prefix = [vocab_lib.BOS_ID] if f == "inputs" else []
    suffix = [feature.vocabulary.eos_id] if feature.add_eos else []
    features[f] = [np.asarray(prefix + ids + suffix, np.int32)
                   for ids in feature.vocabulary.encode_batch(rows)]
  return example_ids, features


def count_truncated(
    mixture_or_task_name: str | seqio.Task | seqio.Mixture,
    split: str,
    feature_lengths: Mapping[str, int],
    use_cached: bool = False,
) -> TruncationReport:
  """Counts the examples of a split that `feature_lengths` would truncate."""
  task = task_lookup.get_task(mixture_or_task_name)
  reports = [
      cached_truncation(t, split, feature_lengths) if use_cached
      else tokenize_split(t, split, feature_lengths).report
      for t in task_lookup.sub_tasks(task) if split in t.splits
  ]
  total = TruncationReport(task.name, split, dict(feature_lengths))
  for f in feature_lengths:
    total.truncated[f] = sum(r.truncated[f] for r in reports)
    total.longest[f] = max([r.longest[f] for r in reports], default=0)
    total.truncated_ids[f] = [i for r in reports for i in r.truncated_ids[f]]
  total.examples = sum(r.examples for r in reports)
  return total


def cached_truncation(task: seqio.Task, split: str, feature_lengths: Mapping[str, int],
                      max_ids: int = 5) -> TruncationReport:
  """The truncation count of a task's seqio cache, without tokenizing.

  When the cache's `stats.<split>.json` shows that no example is longer than
  the feature lengths, that is the whole answer (no pass over the data);
  otherwise the cached examples' lengths are counted with TF ops.
  """
  report = TruncationReport(task.name, split, dict(feature_lengths),
                            truncated={f: 0 for f in feature_lengths},
                            longest={f: 0 for f in feature_lengths},
                            truncated_ids={f: [] for f in feature_lengths})
  stats = task.get_cached_stats(split)
  # The cache holds the tokens before `append_eos_after_trim`.
  eos = {f: int(task.output_features[f].add_eos) for f in feature_lengths}
  longest = {f: int(stats.get(f"{f}_max_tokens", -1)) + eos[f] for f in feature_lengths}
  if all(0 <= longest[f] <= limit for f, limit in feature_lengths.items()):
    report.examples = int(stats["examples"])
    report.longest = longest
    return report
  ds = task.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1,
                        use_cached=True, trim_output_features=False)
  ds = ds.map(lambda ex: {"id": ex.get("id", tf.constant(b"")),
                          **{f: tf.size(ex[f]) for f in feature_lengths}})
  for batch in ds.batch(8192).as_numpy_iterator():
    for i, ex_id in enumerate(batch["id"]):
      report.count_lengths(ex_id, {f: batch[f][i] for f in feature_lengths}, max_ids)
  return report


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
      `t5x.utils.get_dataset` (no iterator checkpoint with Python tokenizers),
      and so does `use_cached=True` (seqio's pre-tokenized cache: no
      tokenization at start-up, the iterator is checkpointed).
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
  if isinstance(task, seqio.Mixture) or continue_from_last_checkpoint or cfg.use_cached:
    # From seqio's cache the stream is TF ops only: t5x's own reader, whose
    # iterator t5x checkpoints.
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
