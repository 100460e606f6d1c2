"""Verification on Apache Beam: the same programs as `verify.verify_dir`, on any runner.

    report = verify_beam("outputs/teacher", "outputs/verified", ExecLimits(workers=2),
                         ["--runner=DirectRunner"])

The pipeline (one stage per line):

  completion shards (`<in_dir>/completions*.jsonl`, any glob)
    -> rows (a shard's torn last line dropped, as in `read_completions`)
    -> one row per key (the first by shard path then line, as the single
       process reads one file)
    -> batches of rows -> `_VerifyFn`: extract, execute in one sandboxed
       `Executor` per worker (made in `setup`, closed in `teardown`), compare
       (`pad_jax.execution.verification`, as the single process)
    -> per question id: `verify.select_programs` (the same sort and the same
       duplicate rule as the single process)
    -> per output shard (SHA-256 of the question id): `programs-SSSSS-of-NNNNN.jsonl`,
       each sorted by (id, variant, sample)
    -> every verdict (without its completion text) -> `report.json`/`report.png`
       through `verify.write_report` (the single process's report, same keys).

The kept programs equal the single process's `programs.jsonl` row for row once
the shards are concatenated and sorted by id (tests/beam_verify_test.py). On a
runner with many machines, `in_dir` and `out_dir` must be paths every worker
reads (the inputs) and writes (the outputs), e.g. a shared file system.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pathlib
import time
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pad_jax import jsonl
from pad_jax.data.programs import ProgramRecord
from pad_jax.data.programs import write_programs
from pad_jax.errors import ConfigError
from pad_jax.errors import DataError
from pad_jax.execution import verification
from pad_jax.execution.limits import ExecLimits
from pad_jax.execution.verification import Verdict
from pad_jax.teacher import cache as cache_lib
from pad_jax.teacher import verify as verify_lib

SHARD_PATTERN = "programs-*-of-*.jsonl"
DEFAULT_GLOB = "completions*.jsonl"
_BATCH = 256  # Rows per executor call: big enough to keep every worker busy.


def shard_path(out_dir: str, index: int, num_shards: int) -> str:
  return os.path.join(out_dir, f"programs-{index:05d}-of-{num_shards:05d}.jsonl")


def shard_of(question_id: str, num_shards: int) -> int:
  """The output shard of a question: stable across runs, runners and machines."""
  digest = hashlib.sha256(str(question_id).encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") % num_shards


def completion_paths(in_dir: str, pattern: str = DEFAULT_GLOB) -> list[str]:
  """The completion shards `in_dir/pattern`, sorted (the order that picks a key's row)."""
  paths = sorted(glob.glob(os.path.join(in_dir, pattern)))
  if not paths:
    raise DataError(os.path.join(in_dir, pattern), None, None,
                    "no completion shards match (is --in_dir a synthesis output directory?)")
  return paths


def _read_shard(path: str) -> Iterable[tuple[str, tuple[str, int, dict[str, Any]]]]:
  for index, row in enumerate(verify_lib.read_completions(path)):
    yield row["key"], (path, index, row)


def _first_row(keyed: tuple[str, Iterable[tuple[str, int, dict[str, Any]]]]) -> dict[str, Any]:
  return min(keyed[1], key=lambda x: (x[0], x[1]))[2]


class _VerifyFn(beam.DoFn):
  """Extracts, executes and compares a batch of rows; one executor per DoFn instance."""

  def __init__(self, limits: ExecLimits):
    self._limits = limits
    self._executor = None
    self._results: dict[str, Any] = {}

  def setup(self):
    self._executor = self._limits.executor()
    self._executor.__enter__()
    self._results = {}

  def process(self, rows: Sequence[dict[str, Any]]):
    verdicts = [verification.from_completion(row) for row in rows]
    yield from verification.execute(self._executor, verdicts, self._results)
    if len(self._results) > 100_000:
      self._results.clear()  # A bound on memory; only repeated texts are re-run.

  def teardown(self):
    if self._executor is not None:
      self._executor.__exit__(None, None, None)
      self._executor = None


def _select(keyed: tuple[str, Iterable[Verdict]], mode: str
           ) -> tuple[list[ProgramRecord], int]:
  return verify_lib.select_programs(list(keyed[1]), mode)


def _slim(verdict: Verdict) -> Verdict:
  """A verdict without the completion text and program: all the report reads."""
  row = {k: v for k, v in verdict.row.items() if k not in ("text", "question")}
  return Verdict(row=row, program=None, status=verdict.status, match=verdict.match)


def _write_shard(keyed: tuple[int, Iterable[list[ProgramRecord]]], out_dir: str,
                 num_shards: int) -> int:
  index, groups = keyed
  records = [r for group in groups for r in group]
  records.sort(key=lambda r: (r.id, str(r.prompt_variant), r.sample))
  return write_programs(shard_path(out_dir, index, num_shards), records)


def _write_report(verdicts: list[Verdict], kept: list[tuple[list[ProgramRecord], int]],
                  out_dir: str, mode: str, failed: list[dict[str, Any]],
                  manifest: dict[str, Any], start: float) -> dict[str, Any]:
  records = [r for group, _ in kept for r in group]
  duplicates = sum(d for _, d in kept)
  return verify_lib.write_report(out_dir, verdicts, records, duplicates, mode, failed, manifest,
                                 time.time() - start)


def build_pipeline(pipeline: beam.Pipeline, paths: Sequence[str], out_dir: str,
                   limits: ExecLimits, num_shards: int, failed: list[dict[str, Any]],
                   manifest: dict[str, Any], start: float) -> None:
  """Adds the verification stages (module docstring) to `pipeline`."""
  mode = limits.answer_mode
  verdicts = (
      pipeline
      | "Shards" >> beam.Create(list(paths))
      | "Read" >> beam.FlatMap(_read_shard)
      | "ByKey" >> beam.GroupByKey()
      | "FirstRow" >> beam.Map(_first_row)
      | "Batch" >> beam.BatchElements(min_batch_size=_BATCH, max_batch_size=_BATCH)
      | "Verify" >> beam.ParDo(_VerifyFn(limits)))
  kept = (
      verdicts
      | "ByQuestion" >> beam.Filter(lambda v: bool(v.match.get(mode)))
      | "KeyQuestion" >> beam.Map(lambda v: (str(v.row["id"]), v))
      | "GroupQuestion" >> beam.GroupByKey()
      | "Select" >> beam.Map(_select, mode))
  empty = pipeline | "AllShards" >> beam.Create([(i, []) for i in range(num_shards)])
  _ = (
      (kept | "KeyShard" >> beam.Map(
          lambda k: (shard_of(k[0][0].id, num_shards) if k[0] else 0, k[0])), empty)
      | "Merge" >> beam.Flatten()
      | "GroupShard" >> beam.GroupByKey()
      | "Write" >> beam.Map(_write_shard, out_dir, num_shards))
  all_verdicts = verdicts | "Slim" >> beam.Map(_slim) | "AllVerdicts" >> beam.combiners.ToList()
  all_kept = kept | "AllKept" >> beam.combiners.ToList()
  _ = (
      all_verdicts
      | "Report" >> beam.Map(_write_report, beam.pvalue.AsSingleton(all_kept), out_dir, mode,
                             failed, manifest, start))


def verify_beam(in_dir: str, out_dir: Optional[str] = None, limits: ExecLimits = ExecLimits(),
                pipeline_args: Sequence[str] = ("--runner=DirectRunner",), num_shards: int = 4,
                pattern: str = DEFAULT_GLOB) -> dict[str, Any]:
  """Verifies the completion shards of `in_dir` with a Beam pipeline.

  Args:
    in_dir: a synthesis output directory (`completions*.jsonl`; `failed.jsonl`
      and `run.json` are used when present).
    out_dir: where `programs-*-of-*.jsonl`, report.json and report.png go
      (default `in_dir`); older `programs-*-of-*.jsonl` there are removed first.
    limits: the executor limits of every worker, and the answer mode.
    pipeline_args: Beam pipeline options (`--runner=...` and the runner's own).
    num_shards: output shards of programs.
    pattern: the completion shards' glob inside `in_dir`.

  Returns:
    The report dict (as written to report.json).

  Raises:
    DataError: no completion shard, a malformed row (file:line:field).
  """
  if num_shards < 1:
    raise ConfigError(f"verify_beam.num_shards: must be >= 1, got {num_shards}")
  out_dir = os.fspath(out_dir or in_dir)
  paths = completion_paths(os.fspath(in_dir), pattern)
  for path in paths:  # Fail before starting workers, with file:line:field.
    verify_lib.read_completions(path)
  manifest = verify_lib.read_manifest(in_dir)
  failed = jsonl.read_resumable(pathlib.Path(in_dir) / cache_lib.FAILED_FILE)
  pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)
  for old in glob.glob(os.path.join(out_dir, SHARD_PATTERN)):
    os.remove(old)
  start = time.time()
  with beam.Pipeline(options=PipelineOptions(list(pipeline_args))) as pipeline:
    build_pipeline(pipeline, paths, out_dir, limits, num_shards, failed, manifest, start)
  return verify_lib.read_report(out_dir)
