"""Shared helpers for the teacher tests: questions, a fake teacher, file checks."""

import json
import pathlib

from fake_openai import chatty, question_of
from pad_jax.data import benchmarks
from pad_jax.teacher import gold

WRONG_MARK = "return result + 1"


def gsm8k_examples(data_dir, limit):
  return benchmarks.load("gsm8k", "train", data_dir)[:limit]


class GoldResponder:
  """A fake teacher: the gold program, chatty; sample 1 of every question is wrong."""

  def __init__(self, examples, wrong_choice=1):
    self.programs = {" ".join(e.question.split()): gold.gold_program(e) for e in examples}
    self.wrong_choice = wrong_choice

  def __call__(self, request):
    program = self.programs.get(question_of(request))
    if program is None:
      return "I am not sure how to solve this one."
    wrong = request.get("choice_index", 0) == self.wrong_choice
    if request.get("n", 1) == 1:  # Repeated requests: the prompt variant tells samples apart.
      wrong = "Solve each math word problem" in request["messages"][0]["content"]
    if wrong:
      program = program.replace("return result", WRONG_MARK)
    return chatty(program)


def read_jsonl(path):
  path = pathlib.Path(path)
  if not path.exists():
    return []
  return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def assert_secret_not_on_disk(directory, secret):
  for path in pathlib.Path(directory).rglob("*"):
    if path.is_file():
      assert secret.encode() not in path.read_bytes(), f"API key found in {path}"
