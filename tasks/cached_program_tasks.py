"""Program datasets as seqio tasks that seqio's Beam tool caches pre-tokenized.

    PAD_CACHED_PROGRAMS="pad_programs_big=outputs/verified/programs-*.jsonl" \\
      python -m seqio.scripts.cache_tasks_main --module_import=tasks.cached_program_tasks \\
      --tasks=pad_programs_big --output_cache_dir=outputs/seqio_cache \\
      --pipeline_options=--runner=DirectRunner

    PAD_CACHED_PROGRAMS=... python -m t5x.train ... --gin_file=runs/pad_finetune.gin \\
      --gin.MIXTURE_OR_TASK_NAME="'pad_programs_big'" --gin.USE_CACHED_TASKS=True \\
      --seqio_additional_cache_dirs=outputs/seqio_cache

Importing this module registers one task per `name=glob` entry of
$PAD_CACHED_PROGRAMS (`;`-separated; optional $PAD_CACHED_PROGRAMS_VOCAB: a
trained student vocabulary directory, `extra_ids=0`, or `@demo` for the demo
student's; default CodeT5's), so
`cache_tasks_main` and `t5x.train` see the same task. Code may call
`register_cached_program_task` instead.

The task:
* source: the program-dataset JSONL shards matched by the glob, one seqio
  shard per file (Beam workers read them in parallel), rows validated as
  `pad_jax.data.programs.read_programs` does (file:line:field errors);
* splits `train` / `validation` per QUESTION, decided by that question alone
  (SHA-256 of `"<seed>:<id>"` as a fraction below `validation_fraction`), so
  shards are split independently and no question leaks. (`program_tasks`
  draws an exact count over the whole file instead, which needs every id
  first: the two carvings differ.)
* preprocessors: `tokenize_batched` (the `tokenizers` batch encoder, the
  same ids as seqio's `tokenize`), `add_bos`, the cache placeholder, then
  `append_eos_after_trim` after the cache (the only step that needs the
  feature lengths): reading the cache runs TF ops only, so t5x can save and
  restore the data iterator in its checkpoints.
"""

from __future__ import annotations

import functools
import glob as glob_lib
import hashlib
import os
import pathlib
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import gin
import seqio
import tensorflow as tf

from pad_jax import jsonl
from pad_jax.student import vocab as vocab_lib
from pad_jax.data import programs
from pad_jax.errors import ConfigError
from pad_jax.errors import DataError
from tasks import postprocessors
from tasks import preprocessors
from tasks import registry

SPLITS = ("train", "validation")
ENV_TASKS = "PAD_CACHED_PROGRAMS"
ENV_VOCAB = "PAD_CACHED_PROGRAMS_VOCAB"
_BATCH = 1024


def in_validation(question_id: str, validation_fraction: float, seed: int) -> bool:
  """Whether a question belongs to the validation split (decided by it alone)."""
  digest = hashlib.sha256(f"{seed}:{question_id}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64 < validation_fraction


def tokenize_batched(dataset: tf.data.Dataset, output_features: Mapping[str, seqio.Feature],
                     batch_size: int = _BATCH) -> tf.data.Dataset:
  """seqio's `tokenize` (with `_pretokenized` copies), a batch of strings at a time.

  The vocabulary's `encode_tf` of a string vector calls the `tokenizers`
  batch encoder once per batch (`CodeT5Vocabulary`) instead of once per
  example; the ids are the same.
  """
  def encode(batch):
    batch = dict(batch)
    for name, feature in output_features.items():
      if name in batch:
        batch[f"{name}_pretokenized"] = batch[name]
        batch[name] = tf.cast(feature.vocabulary.encode_tf(batch[name]), tf.int32)
    return batch
  return dataset.batch(batch_size).map(encode, num_parallel_calls=tf.data.AUTOTUNE,
                                       deterministic=True).unbatch()


class ProgramShardsSource(seqio.DataSource):
  """Program-dataset JSONL shards (a glob) as a seqio source, one shard per file."""

  def __init__(self, pattern: str, validation_fraction: float, seed: int, task_name: str):
    super().__init__(splits=SPLITS, num_input_examples=None, caching_permitted=True)
    self._pattern = pattern
    self._validation_fraction = validation_fraction
    self._seed = seed
    self._task_name = task_name

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return False

  def list_shards(self, split: str) -> Sequence[str]:
    return shard_paths(self._pattern)

  def num_input_examples(self, split: str) -> Optional[int]:
    """From the cache's stats when the task is cached (no pass over the data)."""
    task = seqio.TaskRegistry.get(self._task_name)
    if task.cache_dir:
      return int(task.get_cached_stats(split)["examples"])
    return None

  def _examples(self, paths: Sequence[bytes], split: bytes) -> Iterator[dict[str, Any]]:
    want_validation = split.decode() == "validation"
    for path in paths:
      path = path.decode()
      for number, row in jsonl.iter_rows(path):
        record = programs.record_from_json(row, path, number)
        if in_validation(record.id, self._validation_fraction, self._seed) == want_validation:
          yield {"id": record.id, "inputs": record.question, "targets": record.program,
                 "answer": preprocessors.format_number(record.answer)}

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: Optional[int] = None,
                  shard_info: Optional[seqio.ShardInfo] = None, *,
                  sequence_length: Optional[Mapping[str, int]] = None,
                  use_cached: bool = False, num_epochs: Optional[int] = 1) -> tf.data.Dataset:
    del shuffle, seed, sequence_length, use_cached, num_epochs  # Files in order; seqio shuffles.
    if split not in SPLITS:
      raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    paths = list(self.list_shards(split))
    if shard_info:
      paths = paths[shard_info.index::shard_info.num_shards]
    signature = {k: tf.TensorSpec([], tf.string) for k in preprocessors.RAW_FEATURES}
    return tf.data.Dataset.from_generator(
        self._examples, output_signature=signature,
        args=(tf.constant(paths, tf.string, shape=[len(paths)]), split))


def shard_paths(pattern: str) -> list[str]:
  """The files a program-dataset glob matches, sorted; DataError if none."""
  paths = sorted(glob_lib.glob(os.path.expanduser(pattern)))
  if not paths:
    raise DataError(pattern, None, None, "no program-dataset file matches")
  return [str(pathlib.Path(p).resolve()) for p in paths]


def cached_preprocessors() -> list:
  """`tokenize_batched`, `add_bos`, cache placeholder, `append_eos_after_trim`."""
  return [tokenize_batched, preprocessors.add_bos, seqio.CacheDatasetPlaceholder(),
          seqio.preprocessors.append_eos_after_trim]


@gin.configurable(module="tasks.cached_program_tasks")
def register_cached_program_task(name: str, pattern: str,
                                 vocabulary: Optional[seqio.Vocabulary] = None,
                                 validation_fraction: float = 0.05,
                                 seed: int = 0) -> seqio.Task:
  """Registers a cacheable question -> program task over JSONL shards.

  Idempotent like `program_tasks.register_program_task`. Reads no row: the
  files are listed only (the cache, or the first dataset, reads them).

  Args:
    name: the seqio task name.
    pattern: a program-dataset JSONL file or a glob of shards.
    vocabulary: the model's vocabulary (default CodeT5's).
    validation_fraction: expected share of questions held out, in [0, 1).
    seed: seed of the per-question carving.

  Returns:
    The task.

  Raises:
    DataError: no file matches `pattern`.
    ConfigError: `validation_fraction` outside [0, 1).
  """
  if not 0 <= validation_fraction < 1:
    raise ConfigError(f"register_cached_program_task.validation_fraction: must be in [0, 1), "
                      f"got {validation_fraction}")
  paths = shard_paths(pattern)
  vocabulary = vocabulary or preprocessors.default_vocabulary()
  return registry.register_once(
      name,
      owner="register_cached_program_task",
      key=("cached_program", tuple(paths), vocabulary, validation_fraction, seed),
      source=ProgramShardsSource(pattern, validation_fraction, seed, name),
      preprocessors=cached_preprocessors(),
      output_features=preprocessors.output_features(vocabulary),
      postprocess_fn=postprocessors.postprocess,
      metric_fns=[postprocessors.execution_metric])


def member_names(name: str, jsonl_paths: Union[str, Mapping[str, str]]) -> list[str]:
  """The task names `cached_program_task` registers (one per source)."""
  return registry.source_task_names(name, jsonl_paths)


def cached_program_task(name: str, jsonl_paths: Union[str, Mapping[str, str]],
                        rates: Optional[Mapping[str, float]] = None,
                        vocabulary: Optional[seqio.Vocabulary] = None,
                        validation_fraction: float = 0.05, seed: int = 0) -> str:
  """Registers (once) a cached task, or a mixture of one per source; returns `name`.

  The cached counterpart of `tasks.pipeline_tasks.program_task` (the same
  sources and mixture, `registry.register_sources`), for gin
  (`MIXTURE_OR_TASK_NAME = @tasks.cached_program_tasks.cached_program_task()`)
  and for the module `seqio.scripts.cache_tasks_main` imports. A source's
  rate defaults to its number of cached training examples (or, before the
  cache exists, 1).

  Raises:
    DataError: no file matches a source's glob.
    ValueError: no source, a bad `validation_fraction`, or a name registered
      by other code.
  """
  return registry.register_sources(
      name, jsonl_paths,
      lambda task_name, pattern: register_cached_program_task(
          task_name, pattern, vocabulary, validation_fraction, seed),
      rates, default_rate=_cached_examples)


def _cached_examples(task: seqio.Task, pattern: str) -> float:
  del pattern  # The cache's statistics count the examples.
  return float(task.num_input_examples("train") or 1) if task.cache_dir else 1.0


def _vocabulary_from_env() -> Optional[seqio.Vocabulary]:
  vocab_dir = os.environ.get(ENV_VOCAB)
  if not vocab_dir:
    return None
  if vocab_dir == "@demo":
    # Deferred on purpose: only the demo student's vocabulary needs this module.
    from pad_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    return synthetic.demo_vocabulary()
  return vocab_lib.CodeT5Vocabulary(vocab_dir, extra_ids=0)


@functools.lru_cache(maxsize=None)
def register_from_env(spec: str) -> tuple[str, ...]:
  """Registers the tasks of a $PAD_CACHED_PROGRAMS value; returns their names."""
  names = []
  for entry in filter(None, (e.strip() for e in spec.split(";"))):
    name, sep, pattern = entry.partition("=")
    if not sep or not name.strip() or not pattern.strip():
      raise ConfigError(f"${ENV_TASKS}: expected name=glob[;name=glob...], got {entry!r}")
    register_cached_program_task(name.strip(), pattern.strip(), _vocabulary_from_env())
    names.append(name.strip())
  return tuple(names)


if os.environ.get(ENV_TASKS):
  register_from_env(os.environ[ENV_TASKS])
