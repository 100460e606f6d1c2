"""The step verifier's task: (question, partial program) -> "correct" | "wrong".

PaD's reasoning scorer (stage IV) is a small T5 that reads a question and a
partial program and says whether the program, continued from there, reaches
the gold answer. Its data come from `python -m pad_jax.stepwise.verifier_data`
(one JSONL row per question):

    {"id": ..., "question": ..., "answer": 18,
     "prefixes": [{"prefix": "def solution():\n    a = 3\n",
                   "label": "correct", "completions": 4, "reached": 3,
                   "source": "gold"}, ...]}

Each prefix is one example: `inputs` = `verifier_input(question, prefix)`,
`targets` = its label. Questions (with all their prefixes) are carved into
train/validation as program tasks are. The verifier scores a candidate by
the log-probability of "correct" against "wrong" (`pad_jax.decoding.stepwise_scorers`).
"""

from __future__ import annotations

import collections
import functools
import os
from typing import Any, Mapping, Optional, Sequence

import seqio

from pad_jax import answers
from pad_jax import jsonl
from pad_jax.errors import DataError
from tasks import preprocessors
from tasks import program_tasks
from tasks import registry

SPLITS = ("train", "validation")
CORRECT, WRONG = "correct", "wrong"
LABELS = (CORRECT, WRONG)
SEPARATOR = "\n# partial solution:\n"


def verifier_input(question: str, prefix: str) -> str:
  """The verifier's input text: the question, then the partial program.

  The program's trailing whitespace (a BPE newline id may carry the next
  line's indentation) is dropped, so a prefix reads the same in the data and
  in the search.
  """
  return question.strip() + SEPARATOR + prefix.rstrip() + "\n"


def read_verifier_rows(path: str) -> list[dict[str, Any]]:
  """Reads verifier-data rows, raising DataError(file, line, field)."""
  rows = []
  for number, row in jsonl.iter_rows(path):
    for field in ("id", "question", "answer", "prefixes"):
      if field not in row:
        raise DataError(path, number, field, "missing field")
    jsonl.get_text(row, "question", path, number)
    if answers.parse_number(row["answer"]) is None:
      raise DataError(path, number, "answer",
                      f"not a number: {jsonl.short(row['answer'])}")
    if not isinstance(row["prefixes"], list):
      raise DataError(path, number, "prefixes", "must be a list")
    for i, item in enumerate(row["prefixes"]):
      field = f"prefixes[{i}]"
      if not isinstance(item, dict) or not isinstance(item.get("prefix"), str):
        raise DataError(path, number, field, "needs a string 'prefix'")
      if item.get("label") not in LABELS:
        raise DataError(path, number, f"{field}.label",
                        f"must be one of {LABELS}, got "
                        f"{jsonl.short(item.get('label'))}")
    rows.append(row)
  if not rows:
    raise DataError(path, None, None, "no rows")
  return rows


@functools.lru_cache(maxsize=16)
def _split_rows(path: str, validation_fraction: float, seed: int,
                mtime_ns: int, size: int) -> dict[str, tuple[dict, ...]]:
  del mtime_ns, size  # cache key only: a changed file is re-read
  rows = read_verifier_rows(path)
  validation = program_tasks.split_question_ids(
      [str(r["id"]) for r in rows], validation_fraction, seed)
  return {"train": tuple(r for r in rows if str(r["id"]) not in validation),
          "validation": tuple(r for r in rows if str(r["id"]) in validation)}


def _examples(rows: Sequence[Mapping[str, Any]]) -> dict[str, list]:
  out = {"ids": [], "inputs": [], "targets": [], "answers": []}
  for row in rows:
    for i, item in enumerate(row["prefixes"]):
      out["ids"].append(f"{row['id']}:{i}")
      out["inputs"].append(verifier_input(row["question"], item["prefix"]))
      out["targets"].append(item["label"])
      out["answers"].append(answers.parse_number(row["answer"]))
  return out


def balanced(examples: dict[str, list]) -> dict[str, list]:
  """`examples` with each label's examples repeated (in order) up to the commonest label's count.

  A step verifier trained on the raw labels (about four `wrong` prefixes to
  one `correct` in the demo's data) can settle on always answering `wrong`;
  trained on balanced labels it has to tell them apart.
  """
  by_label: dict[str, list[int]] = {}
  for i, label in enumerate(examples["targets"]):
    by_label.setdefault(label, []).append(i)
  if len(by_label) < 2:
    return examples
  most = max(len(v) for v in by_label.values())
  order = [i for indices in by_label.values()
           for i in (indices * (most // len(indices) + 1))[:most]]
  order.sort()
  return {k: [v[i] for i in order] for k, v in examples.items()}


def verifier_dataset(split: str, shuffle_files: bool = False,
                     seed: Optional[int] = None, *, path: str,
                     validation_fraction: float, split_seed: int,
                     balance_labels: bool = False):
  """Raw string examples {id, inputs, targets, answer}: one per prefix
  (train: each label repeated up to the commonest one's count with `balance_labels`)."""
  del shuffle_files, seed
  stat = os.stat(path)
  rows = _split_rows(path, validation_fraction, split_seed, stat.st_mtime_ns,
                     stat.st_size)[split]
  examples = _examples(rows)
  if balance_labels and split == "train":
    examples = balanced(examples)
  return preprocessors.string_dataset(**examples)


def postprocess(output: Any, example: Optional[Mapping[str, Any]] = None,
                is_target: bool = False) -> str:
  """The label text (targets and predictions alike)."""
  del example, is_target
  if isinstance(output, bytes):
    output = output.decode("utf-8", errors="replace")
  return str(output).strip()


def accuracy_metric(targets: Sequence[str],
                    predictions: Sequence[str]) -> dict[str, float]:
  """Label accuracy, and the recall of each label."""
  n = max(1, len(targets))
  metrics = {"accuracy": sum(t == p for t, p in zip(targets, predictions)) / n}
  for label in LABELS:
    pairs = [(t, p) for t, p in zip(targets, predictions) if t == label]
    if pairs:
      metrics[f"{label}_recall"] = sum(t == p for t, p in pairs) / len(pairs)
  return metrics


def register_verifier_task(name: str, jsonl_path: str,
                           vocabulary: Optional[seqio.Vocabulary] = None,
                           validation_fraction: float = 0.05,
                           seed: int = 0, balance_labels: bool = False) -> seqio.Task:
  """Registers the verifier task over a verifier-data JSONL (idempotent;
  `balance_labels`: see `balanced`)."""
  if not 0 <= validation_fraction < 1:
    raise ValueError(f"validation_fraction={validation_fraction} must be in "
                     "[0, 1)")
  path = os.path.realpath(jsonl_path)
  if not os.path.isfile(path):
    raise DataError(jsonl_path, None, None, "file not found")
  stat = os.stat(path)
  split = _split_rows(path, validation_fraction, seed, stat.st_mtime_ns,
                      stat.st_size)
  counts = {s: sum(len(r["prefixes"]) for r in split[s]) for s in SPLITS}
  if balance_labels:  # as many as `balanced` gives, without building the examples
    labels = collections.Counter(p["label"] for r in split["train"] for p in r["prefixes"])
    if len(labels) > 1:
      counts["train"] = max(labels.values()) * len(labels)
  vocabulary = vocabulary or preprocessors.default_vocabulary()
  return registry.register_once(
      name, owner="register_verifier_task",
      key=("verifier", path, stat.st_mtime_ns, stat.st_size, vocabulary,
           validation_fraction, seed, balance_labels),
      source=seqio.FunctionDataSource(
          functools.partial(verifier_dataset, path=path,
                            validation_fraction=validation_fraction,
                            split_seed=seed, balance_labels=balance_labels),
          splits=SPLITS, num_input_examples=counts),
      preprocessors=preprocessors.tokenize_preprocessors(),
      output_features=preprocessors.output_features(vocabulary),
      postprocess_fn=postprocess,
      metric_fns=[accuracy_metric])


def verifier_task(jsonl_path: str, name: str = "pad_step_verifier",
                  vocabulary: Optional[seqio.Vocabulary] = None,
                  validation_fraction: float = 0.05, seed: int = 0,
                  balance_labels: bool = False) -> str:
  """For gin (`runs/step_verifier.gin`): registers the task, returns its name."""
  register_verifier_task(name, jsonl_path, vocabulary, validation_fraction,
                         seed, balance_labels)
  return name
