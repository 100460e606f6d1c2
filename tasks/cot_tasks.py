"""Chain-of-thought (CoT) distillation baseline: question -> rationale ending in the answer.

The PaD paper compares program-aided distillation with a student that writes
a natural-language rationale whose last sentence states the answer, trained
on the same questions. This module provides that baseline's data and task:

* `gsm8k_rationale(text, answer)`: GSM8K's gold rationale with its calculator
  marks removed, ending in "The answer is N.";
* `program_rationale(program)`: a rationale written from a gold `solution()`
  program (the synthetic problems have no rationale), one sentence per step
  with the numbers substituted ("add the ones bought: 24 + 7 = 31.");
* `parse_answer(text)`: the answer of a rationale (after the last
  "answer is", else the last number);
* `register_cot_task(name, jsonl_path, ...)`: a training task from CoT JSONL
  rows `{id, question, rationale, answer}`, with the same per-question
  validation carving as program tasks, an answer-parsing postprocessor and
  an `accuracy` metric.
"""

from __future__ import annotations

import ast
import functools
import math
import os
import re
from typing import Any, Mapping, Optional, Sequence

import seqio

from pad_jax import answers
from pad_jax import arithmetic
from pad_jax import jsonl
from pad_jax.errors import DataError
from tasks import preprocessors
from tasks import program_tasks
from tasks import registry

SPLITS = ("train", "validation")
FIELDS = ("id", "question", "rationale", "answer")
_CALC_MARK_RE = re.compile(r"<<[^<>]*>>")
_ANSWER_RE = re.compile(r"answer is\s*:?\s*\$?\s*(-?[\d,]*\.?\d+)", re.IGNORECASE)
_NUMBER_RE = re.compile(r"-?\d[\d,]*\.?\d*|-?\.\d+")
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
            ast.Mod: "%", ast.Pow: "**"}


def answer_sentence(answer: float) -> str:
  return f"The answer is {preprocessors.format_number(float(answer))}."


def gsm8k_rationale(rationale: str, answer: float) -> str:
  """GSM8K's rationale without `<<expr=result>>` marks, ending in the answer sentence."""
  text = _CALC_MARK_RE.sub("", rationale).split("####")[0].strip()
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return " ".join(lines + [answer_sentence(answer)])


def _format_value(value: float) -> str:
  if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
    return str(int(value))
  if isinstance(value, float):
    return f"{value:.6g}"
  return str(value)


def _substituted(node: ast.AST, env: Mapping[str, float]) -> str:
  """The expression with every name replaced by its value."""
  if isinstance(node, ast.Name) and node.id in env:
    return _format_value(env[node.id])
  if isinstance(node, ast.BinOp) and type(node.op) in _SYMBOLS:
    left, right = _substituted(node.left, env), _substituted(node.right, env)
    if isinstance(node.left, ast.BinOp):
      left = f"({left})"
    if isinstance(node.right, ast.BinOp):
      right = f"({right})"
    return f"{left} {_SYMBOLS[type(node.op)]} {right}"
  return ast.unparse(node)


def program_rationale(program: str) -> Optional[str]:
  """A rationale for a straight-line arithmetic `solution()` program (None if it is not one).

  Facts (`x = 24`) become "x is 24.", computed steps become
  "<comment>: <expression with values> = <value>." and the last sentence
  states the returned value.
  """
  try:
    tree = ast.parse(program)
  except SyntaxError:
    return None
  func = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "solution"), None)
  if func is None:
    return None
  lines = program.splitlines()
  env: dict[str, float] = {}
  sentences = []
  result = None
  for statement in func.body:
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
      continue  # docstring
    try:
      if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(
          statement.targets[0], ast.Name):
        name = statement.targets[0].id
        value = arithmetic.evaluate(statement.value, env)
        if isinstance(statement.value, ast.Constant):
          sentences.append(f"{name.replace('_', ' ')} is {_format_value(value)}.")
        elif not isinstance(statement.value, ast.Name):
          comment = _comment_before(lines, statement.lineno)
          prefix = f"{comment[0].upper()}{comment[1:]}: " if comment else ""
          sentences.append(f"{prefix}{name.replace('_', ' ')} = "
                           f"{_substituted(statement.value, env)} = {_format_value(value)}.")
        env[name] = value
      elif isinstance(statement, ast.Return) and statement.value is not None:
        result = arithmetic.evaluate(statement.value, env)
      else:
        return None
    except arithmetic.ArithmeticEvalError:
      return None
  if result is None or not math.isfinite(result):
    return None
  return " ".join(sentences + [answer_sentence(result)])


def _comment_before(lines: Sequence[str], lineno: int) -> Optional[str]:
  previous = lines[lineno - 2].strip() if lineno >= 2 else ""
  return previous[1:].strip() if previous.startswith("#") else None


def parse_answer(text: Any) -> Optional[float]:
  """The final answer of a rationale: after the last "answer is", else the last number."""
  if isinstance(text, bytes):
    text = text.decode("utf-8", errors="replace")
  text = str(text)
  found = _ANSWER_RE.findall(text)
  if found:
    return answers.parse_number(found[-1])
  numbers = _NUMBER_RE.findall(text)
  return answers.parse_number(numbers[-1].rstrip(".")) if numbers else None


def read_cot(path: str) -> list[dict[str, Any]]:
  """Reads CoT JSONL rows, raising DataError(file, line, field) on bad ones."""
  rows = []
  for number, row in jsonl.iter_rows(path):
    for field in FIELDS:
      if field not in row:
        raise DataError(path, number, field, "missing field")
    if answers.parse_number(row["answer"]) is None:
      raise DataError(path, number, "answer", f"not a number: {jsonl.short(row['answer'])}")
    rows.append(row)
  if not rows:
    raise DataError(path, None, None, "no rows")
  return rows


def write_cot(path: str, rows: Sequence[Mapping[str, Any]]) -> int:
  """Replaces `path` atomically with CoT rows (only their `FIELDS`); returns the count."""
  return jsonl.write_rows(path, ({k: row[k] for k in FIELDS} for row in rows))


@functools.lru_cache(maxsize=16)
def _split_rows(path: str, validation_fraction: float, seed: int, mtime_ns: int, size: int):
  del mtime_ns, size  # cache key only
  rows = read_cot(path)
  validation = program_tasks.split_question_ids([str(r["id"]) for r in rows],
                                                validation_fraction, seed)
  return {"train": tuple(r for r in rows if str(r["id"]) not in validation),
          "validation": tuple(r for r in rows if str(r["id"]) in validation)}


def cot_dataset(split: str, shuffle_files: bool = False, seed: Optional[int] = None, *,
                path: str, validation_fraction: float, split_seed: int):
  """Raw string examples {id, inputs, targets, answer} of one split."""
  del shuffle_files, seed
  stat = os.stat(path)
  rows = _split_rows(path, validation_fraction, split_seed, stat.st_mtime_ns, stat.st_size)[split]
  return preprocessors.string_dataset(
      ids=[str(r["id"]) for r in rows], inputs=[r["question"] for r in rows],
      targets=[r["rationale"] for r in rows],
      answers=[answers.parse_number(r["answer"]) for r in rows])


def postprocess(output: Any, example: Optional[Mapping[str, Any]] = None,
                is_target: bool = False) -> Optional[float]:
  """Targets -> the gold number; predictions -> the number the rationale ends with."""
  if is_target and example is not None and "answer" in example:
    value = example["answer"]
    return answers.parse_number(value.decode() if isinstance(value, bytes) else value)
  return parse_answer(output)


def accuracy_metric(targets: Sequence[Optional[float]],
                    predictions: Sequence[Optional[float]]) -> dict[str, float]:
  n = max(1, len(targets))
  correct = sum(p is not None and t is not None and answers.answers_match(p, t)
                for t, p in zip(targets, predictions))
  return {"accuracy": correct / n,
          "answered_rate": sum(p is not None for p in predictions) / n}


def register_cot_task(name: str, jsonl_path: str, vocabulary: Optional[seqio.Vocabulary] = None,
                      validation_fraction: float = 0.05, seed: int = 0) -> seqio.Task:
  """Registers a question -> rationale task from CoT JSONL rows (idempotent)."""
  if not 0 <= validation_fraction < 1:
    raise ValueError(f"validation_fraction={validation_fraction} must be in [0, 1)")
  path = os.path.realpath(jsonl_path)
  stat = os.stat(path)
  split = _split_rows(path, validation_fraction, seed, stat.st_mtime_ns, stat.st_size)
  vocabulary = vocabulary or preprocessors.default_vocabulary()
  return registry.register_once(
      name,
      owner="register_cot_task",
      key=("cot", path, stat.st_mtime_ns, stat.st_size, vocabulary, validation_fraction, seed),
      source=seqio.FunctionDataSource(
          functools.partial(cot_dataset, path=path, validation_fraction=validation_fraction,
                            split_seed=seed),
          splits=SPLITS, num_input_examples={s: len(split[s]) for s in SPLITS}),
      preprocessors=preprocessors.tokenize_preprocessors(),
      output_features=preprocessors.output_features(vocabulary),
      postprocess_fn=postprocess,
      metric_fns=[accuracy_metric])


def cot_rows(records: Sequence[Any], gsm8k_rationales: Mapping[str, tuple[str, float]]
             ) -> tuple[list[dict[str, Any]], int]:
  """CoT rows for program records: GSM8K's own rationale, else one written from the program.

  Args:
    records: `ProgramRecord`s (one row per distinct question is written).
    gsm8k_rationales: `{question id: (rationale, answer)}` of GSM8K train.

  Returns:
    (rows, number of questions without a rationale).
  """
  rows, missing, seen = [], 0, set()
  for record in records:
    if record.id in seen:
      continue
    seen.add(record.id)
    if record.id in gsm8k_rationales:
      rationale = gsm8k_rationale(*gsm8k_rationales[record.id])
    else:
      rationale = program_rationale(record.program)
    if rationale is None:
      missing += 1
      continue
    rows.append({"id": record.id, "question": record.question, "rationale": rationale,
                 "answer": record.answer})
  return rows, missing
