r"""Inspect the benchmark data and validate program datasets.

Usage:
  python -m pad_jax.data stats [--format=table|json] [--data_dir=DIR]
      Number of examples in every benchmark split; json prints
      {benchmark: {split: count}}.
  python -m pad_jax.data show --benchmark=gsm8k [--split=test] [--limit=3]
      Print examples as JSONL (id, question, answer, rationale, source,
      reference_program).
  python -m pad_jax.data validate --path=programs.jsonl [--allow_torn_tail]
      Check a program-dataset JSONL file and summarise it.

The benchmark data directory is --data_dir, else $PAD_DATA_DIR, else
<repo>/../shared/data. Bad input prints one line naming the file, line and
field, a wrong command line one line naming the flag, both with exit status
2; an I/O failure exits with status 1 (`pad_jax/cli.py`).
"""

from __future__ import annotations

import collections
import json
import sys
from typing import Sequence

from absl import flags

from pad_jax import cli
from pad_jax.data import benchmarks
from pad_jax.data import programs
from pad_jax.errors import ConfigError

_FORMAT = flags.DEFINE_enum(
    "format", "table", ["table", "json"], "stats: output format.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None,
    "Benchmark data directory (default: $PAD_DATA_DIR, else "
    "<repo>/../shared/data).")
_BENCHMARK = flags.DEFINE_enum(
    "benchmark", None, list(benchmarks.BENCHMARKS), "show: which benchmark.")
_SPLIT = flags.DEFINE_string("split", "test", "show: which split.")
_LIMIT = flags.DEFINE_integer(
    "limit", None, "show: print at most this many examples (default: all).",
    lower_bound=0)
_PATH = flags.DEFINE_string(
    "path", None, "validate: the program-dataset JSONL file.")
_ALLOW_TORN_TAIL = flags.DEFINE_bool(
    "allow_torn_tail", False,
    "validate: skip an unfinished last line left by a killed writer.")


def format_table(counts: dict[str, dict[str, int]], data_dir: str) -> str:
  """Renders `{benchmark: {split: count}}` as an aligned text table."""
  rows = [(name, split, count) for name, splits in counts.items()
          for split, count in splits.items()]
  width = max([len("benchmark")] + [len(name) for name, _, _ in rows])
  lines = [f"data: {data_dir}",
           f"{'benchmark':<{width}}  {'split':<5}  {'examples':>8}"]
  lines.append("-" * len(lines[-1]))
  lines += [f"{name:<{width}}  {split:<5}  {count:>8}"
            for name, split, count in rows]
  lines.append("-" * len(lines[1]))
  lines.append(f"{'total':<{width}}  {'':<5}  "
               f"{sum(count for _, _, count in rows):>8}")
  return "\n".join(lines)


def _stats() -> None:
  counts = benchmarks.stats(_DATA_DIR.value)
  if _FORMAT.value == "json":
    print(json.dumps(counts))
  else:
    print(format_table(counts, str(benchmarks.default_data_dir(
        _DATA_DIR.value))))


def _show() -> None:
  if _BENCHMARK.value is None:
    raise ConfigError("show needs --benchmark="
                      + "|".join(benchmarks.BENCHMARKS) + " (see --help)")
  splits = benchmarks.BENCHMARKS[_BENCHMARK.value]
  if _SPLIT.value not in splits:
    raise ConfigError(f"--split: {_BENCHMARK.value} has splits "
                      f"{', '.join(splits)}; got {_SPLIT.value!r} (see --help)")
  examples = benchmarks.load(_BENCHMARK.value, _SPLIT.value, _DATA_DIR.value)
  if _LIMIT.value is not None:
    examples = examples[:_LIMIT.value]
  for example in examples:
    sys.stdout.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")


def _validate() -> None:
  if not _PATH.value:
    raise ConfigError("validate needs --path=FILE.jsonl (see --help)")
  records = programs.read_programs(_PATH.value,
                                   allow_torn_tail=_ALLOW_TORN_TAIL.value)
  teachers = collections.Counter(r.teacher for r in records)
  print(json.dumps({
      "path": _PATH.value,
      "records": len(records),
      "questions": len({r.id for r in records}),
      "teachers": dict(teachers.most_common()),
  }))


def main(argv: Sequence[str]) -> int:
  """Runs one command (errors: see `pad_jax.cli`)."""
  commands = {"stats": _stats, "show": _show, "validate": _validate}
  if len(argv) != 2 or argv[1] not in commands:
    raise ConfigError(
        f"expected one command, {' | '.join(commands)}; got "
        f"{' '.join(argv[1:]) or 'none'} (see --help)")
  try:
    commands[argv[1]]()
  except BrokenPipeError:
    # `... show | head`: the reader went away; not an error (and no
    # "Exception ignored" when stdout is flushed at exit).
    sys.stderr.close()
  return 0


if __name__ == "__main__":
  cli.run(main)
