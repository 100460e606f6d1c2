"""Readers for the math-word-problem benchmarks, all into one `Example` type.

The files are the unchanged upstream copies described in the data directory's
README (GSM8K's JSONL, SVAMP's JSON array, PAL's `input`/`target` JSONL files).
They are read from, in order of precedence:

1. the `data_dir` argument (the CLIs' `--data_dir` flag),
2. the `PAD_DATA_DIR` environment variable,
3. `<repo root>/../shared/data`.

Every record becomes an `Example` with a stable id `<benchmark>-<split>-NNNNN`
(its 0-based position in the upstream file) and a float answer. Anything
malformed raises `DataError` naming the file, line and field; no record is ever
skipped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
from typing import Any, Callable, Iterator, Optional

from pad_jax import answers
from pad_jax import jsonl
from pad_jax.errors import ConfigError, DataError

DATA_DIR_ENV = "PAD_DATA_DIR"

# benchmark name -> its splits, in the order the CLI prints them.
BENCHMARKS: dict[str, tuple[str, ...]] = {
    "gsm8k": ("train", "test"),
    "svamp": ("test",),
    "asdiv": ("test",),
    "multiarith": ("test",),
    "addsub": ("test",),
    "singleeq": ("test",),
    "singleop": ("test",),
    "gsmhard": ("test",),
}

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
_HOW_TO_POINT = (f"pass --data_dir=DIR (data_dir= in Python) or set "
                 f"{DATA_DIR_ENV} to a directory laid out like ../shared/data")


@dataclasses.dataclass(frozen=True)
class Example:
  """One benchmark problem.

  Attributes:
    id: stable id, `<benchmark>-<split>-NNNNN` (0-based position in the file).
    question: the problem text.
    answer: the gold answer as a float.
    rationale: GSM8K's worked solution (the text before `####`, with its
      `<<expr=result>>` calculator marks kept); None for other benchmarks.
    source: where the record came from: the file relative to the data
      directory plus `:line` (JSONL) or `#ID` (SVAMP's upstream ID).
    reference_program: GSM-Hard's reference `def solution()` program (the
      program that computed its `answer`); None for other benchmarks.
  """
  id: str
  question: str
  answer: float
  rationale: Optional[str]
  source: str
  reference_program: Optional[str] = None

  def to_json(self) -> dict[str, Any]:
    """The example as a JSON-serialisable dict (None fields omitted)."""
    return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class _FileSpec:
  relpath: str
  reader: Callable[[str, str, pathlib.Path, str], list[Example]]


def default_data_dir(data_dir: Optional[os.PathLike | str] = None
                    ) -> pathlib.Path:
  """The benchmark data directory: `data_dir` > $PAD_DATA_DIR > default.

  Args:
    data_dir: an explicit directory (e.g. from a `--data_dir` flag); wins
      when given.

  Returns:
    The directory to read from (not checked for existence; `load` does).
  """
  if data_dir:
    return pathlib.Path(data_dir).expanduser()
  env = os.environ.get(DATA_DIR_ENV)
  if env:
    return pathlib.Path(env).expanduser()
  return _REPO_ROOT.parent / "shared" / "data"


def data_file(benchmark: str, split: str = "test",
              data_dir: Optional[os.PathLike | str] = None) -> pathlib.Path:
  """The upstream file that `load(benchmark, split, data_dir)` reads."""
  return default_data_dir(data_dir) / _spec(benchmark, split).relpath


def load(benchmark: str, split: str = "test",
         data_dir: Optional[os.PathLike | str] = None) -> list[Example]:
  """Reads every example of one benchmark split.

  Args:
    benchmark: a key of `BENCHMARKS`.
    split: one of `BENCHMARKS[benchmark]`.
    data_dir: overrides $PAD_DATA_DIR and the default `../shared/data`.

  Returns:
    All examples in file order (a fresh list; the examples are immutable).

  Raises:
    ValueError: unknown benchmark or split.
    DataError: the directory or file is missing or a record is malformed.
  """
  spec = _spec(benchmark, split)
  root = default_data_dir(data_dir)
  if not root.is_dir():
    raise DataError(root, None, None,
                    f"benchmark data directory not found; {_HOW_TO_POINT}")
  path = root / spec.relpath
  if not path.is_file():
    raise DataError(path, None, None,
                    f"{benchmark}/{split} file not found in data directory "
                    f"{root}; {_HOW_TO_POINT}")
  stat = path.stat()
  return list(_load_cached(benchmark, split, str(path), spec.relpath,
                           stat.st_mtime_ns, stat.st_size))


def stats(data_dir: Optional[os.PathLike | str] = None
         ) -> dict[str, dict[str, int]]:
  """`{benchmark: {split: number of examples}}` for every benchmark."""
  return {name: {split: len(load(name, split, data_dir)) for split in splits}
          for name, splits in BENCHMARKS.items()}


def _spec(benchmark: str, split: str) -> _FileSpec:
  if benchmark not in BENCHMARKS:
    raise ConfigError(f"unknown benchmark {benchmark!r}; expected one of "
                     f"{sorted(BENCHMARKS)}")
  if split not in BENCHMARKS[benchmark]:
    raise ConfigError(f"benchmark {benchmark!r} has no split {split!r}; "
                     f"expected one of {BENCHMARKS[benchmark]}")
  return _FILES[(benchmark, split)]


@functools.lru_cache(maxsize=32)
def _load_cached(benchmark: str, split: str, path: str, relpath: str,
                 mtime_ns: int, size: int) -> tuple[Example, ...]:
  del mtime_ns, size  # Only part of the cache key: a changed file is re-read.
  reader = _FILES[(benchmark, split)].reader
  return tuple(reader(benchmark, split, pathlib.Path(path), relpath))


# ----------------------------------------------------------------------------
# File formats.
# ----------------------------------------------------------------------------


def _iter_json_array(path: pathlib.Path
                    ) -> Iterator[tuple[int, dict[str, Any]]]:
  """Yields `(line number, object)` for each element of a JSON array file."""
  text = jsonl.read_text(path)
  decoder = json.JSONDecoder()
  pos = _skip_space(text, 0)
  if pos >= len(text) or text[pos] != "[":
    raise DataError(path, text.count("\n", 0, pos) + 1, None,
                    "expected a JSON array of objects (is this a JSONL "
                    "file?)")
  pos = _skip_space(text, pos + 1)
  if pos < len(text) and text[pos] == "]":
    return
  while True:
    number = text.count("\n", 0, pos) + 1
    try:
      row, pos = decoder.raw_decode(text, pos)
    except json.JSONDecodeError as e:
      raise DataError(path, e.lineno, None,
                      f"invalid JSON ({e.msg} at column {e.colno})") from e
    if not isinstance(row, dict):
      raise DataError(path, number, None,
                      f"expected a JSON object in the array, got a JSON "
                      f"{jsonl.json_type(row)}")
    yield number, row
    pos = _skip_space(text, pos)
    if pos < len(text) and text[pos] == ",":
      pos = _skip_space(text, pos + 1)
      continue
    if pos < len(text) and text[pos] == "]":
      end = _skip_space(text, pos + 1)
      if end != len(text):
        raise DataError(path, text.count("\n", 0, end) + 1, None,
                        "unexpected data after the JSON array")
      return
    raise DataError(path, text.count("\n", 0, pos) + 1, None,
                    "invalid JSON (expected ',' or ']' in the array)")


def _skip_space(text: str, pos: int) -> int:
  while pos < len(text) and text[pos] in " \t\r\n":
    pos += 1
  return pos


# ----------------------------------------------------------------------------
# Field access.
# ----------------------------------------------------------------------------


def _example_id(benchmark: str, split: str, index: int) -> str:
  return f"{benchmark}-{split}-{index:05d}"


# ----------------------------------------------------------------------------
# One reader per upstream format.
# ----------------------------------------------------------------------------


def _read_gsm8k(benchmark: str, split: str, path: pathlib.Path,
                relpath: str) -> list[Example]:
  """openai/grade-school-math: `question`, `answer` = rationale + `#### N`."""
  examples = []
  for index, (line, row) in enumerate(jsonl.iter_rows(path)):
    question = jsonl.get_text(row, "question", path, line)
    solution = jsonl.get_text(row, "answer", path, line)
    if solution.count("####") != 1:
      raise DataError(path, line, "answer",
                      "expected exactly one '#### N' final-answer marker, "
                      f"found {solution.count('####')}")
    rationale, final = solution.split("####")
    answer = answers.parse_number(final)
    if answer is None:
      raise DataError(path, line, "answer",
                      f"final answer after '####' is not a number: "
                      f"{final.strip()!r}")
    examples.append(Example(
        id=_example_id(benchmark, split, index),
        question=question.strip(),
        answer=answer,
        rationale=rationale.strip(),
        source=f"{relpath}:{line}"))
  return examples


def _read_svamp(benchmark: str, split: str, path: pathlib.Path,
                relpath: str) -> list[Example]:
  """arkilpatel/SVAMP: a JSON array; question = `Body + " " + Question`."""
  examples = []
  for index, (line, row) in enumerate(_iter_json_array(path)):
    upstream_id = row.get("ID")
    if not isinstance(upstream_id, (str, int)) or isinstance(upstream_id, bool):
      raise DataError(path, line, "ID",
                      "missing field" if "ID" not in row
                      else f"expected a string, got {jsonl.short(upstream_id)}")
    body = jsonl.get_text(row, "Body", path, line)
    question = jsonl.get_text(row, "Question", path, line)
    examples.append(Example(
        id=_example_id(benchmark, split, index),
        question=f"{body.strip()} {question.strip()}",
        answer=jsonl.get_number(row, "Answer", path, line),
        rationale=None,
        source=f"{relpath}#{upstream_id}"))
  return examples


def _read_pal(benchmark: str, split: str, path: pathlib.Path,
              relpath: str) -> list[Example]:
  """reasoning-machines/pal: `input`, `target` (and `code` for GSM-Hard)."""
  with_code = benchmark == "gsmhard"
  examples = []
  for index, (line, row) in enumerate(jsonl.iter_rows(path)):
    examples.append(Example(
        id=_example_id(benchmark, split, index),
        question=jsonl.get_text(row, "input", path, line).strip(),
        answer=jsonl.get_number(row, "target", path, line),
        rationale=None,
        source=f"{relpath}:{line}",
        reference_program=(jsonl.get_text(row, "code", path, line)
                           if with_code else None)))
  return examples


_FILES: dict[tuple[str, str], _FileSpec] = {
    ("gsm8k", "train"): _FileSpec("gsm8k/train.jsonl", _read_gsm8k),
    ("gsm8k", "test"): _FileSpec("gsm8k/test.jsonl", _read_gsm8k),
    ("svamp", "test"): _FileSpec("svamp/SVAMP.json", _read_svamp),
    ("asdiv", "test"): _FileSpec("pal/asdiv.jsonl", _read_pal),
    ("multiarith", "test"): _FileSpec("pal/mawpsmultiarith.jsonl", _read_pal),
    ("addsub", "test"): _FileSpec("pal/mawpsaddsub.jsonl", _read_pal),
    ("singleeq", "test"): _FileSpec("pal/mawpssingleeq.jsonl", _read_pal),
    ("singleop", "test"): _FileSpec("pal/mawpssingleop.jsonl", _read_pal),
    ("gsmhard", "test"): _FileSpec("pal/gsmhardv2.jsonl", _read_pal),
}
