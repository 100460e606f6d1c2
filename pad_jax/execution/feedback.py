"""What the interpreter says about a faulty program: the refinement feedback and trigger.

One function, `refinement_feedback(result)`, decides both which programs are
refined and what they are told, from the executor's report (`ExecResult`)
alone, never from the gold answer, so training (`pad_jax.refine`) and
inference (`pad_jax.decoding.refine_loop`) see the same thing:

* a program that did not run (syntax or runtime error, timeout, memory,
  forbidden import, no `solution()`, ...): its status and message, which name
  the exception and the failing line, e.g.
  `runtime_error: NameError: name 'total_cost' is not defined (line 4: ...)`;
* a program that returned no finite number: the executor reports it as
  `bad_return` with what it returned (`bad_return: returned 'abc' (not a
  finite number)`); an `ok` result without a number (never written by the
  executor) says `returned None, not a number`.

* a program that runs and returns a number but states a given that the
  question does not contain (when the caller passes the question and the
  program): a one-line `name = <number>` assignment whose number is none of
  the question's numbers, e.g. `ungrounded_number: line 4: bought = 168:
  168 is not a number in the question`. PaD programs restate the question's
  facts as named variables before computing, so a given that is not in the
  question is most often a miscopied number (the commonest error of a small
  student: `bought = 168` for "buys 61 more"). This needs no gold answer,
  only the question every refinement input carries. Constants that a
  question implies without writing them (`minutes_per_hour = 60`) are
  flagged too; the refinement data teaches the student to keep such a
  correct program unchanged (`pad_jax.refine.data`, source `verified`).

A program that runs, returns a finite number and copies its givens from the
question is not refined, whatever the number: only the gold answer could say
it is wrong, and inference has no gold answer. (A plausibility check such as
"a negative answer" is left out on purpose: 146 of GSM-Hard's 1,319 gold
answers are negative, so it would send correct programs back for repair;
docs/refinement.md.)
"""

from __future__ import annotations

import ast
import re
from typing import Optional

from pad_jax.answers import parse_number
from pad_jax.execution.executor import ExecResult

_NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?")


def format_value(value: object) -> str:
  """A returned value as the feedback writes it (`12`, `2.5`)."""
  number = parse_number(value)
  if number is None:
    return repr(value)
  if number == int(number) and abs(number) < 1e16:
    return str(int(number))
  return f"{number:.6g}"


def question_numbers(question: str) -> set[float]:
  """The numbers written in a question (`1,200` is 1200; `25%` is 25)."""
  return {float(m.group().replace(",", "")) for m in _NUMBER.finditer(question)}


def _given_number(statement: ast.stmt) -> Optional[float]:
  """The number of a one-line `name = <number>` given (None for any other statement)."""
  if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
          and isinstance(statement.targets[0], ast.Name)):
    return None
  value = statement.value
  if isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub):
    value = value.operand
  if isinstance(value, ast.Constant) and type(value.value) in (int, float):
    return float(value.value)
  return None


def grounding_feedback(question: str, program: str) -> Optional[str]:
  """`ungrounded_number: line N: <line>: X is not a number in the question`, or None.

  The first top-level given of `solution()` (`name = <number>`) whose number
  the question does not contain; None when every given is in the question
  or the program does not parse (its run reports that).
  """
  try:
    tree = ast.parse(program)
  except (SyntaxError, ValueError):
    return None
  function = next((n for n in tree.body if isinstance(n, ast.FunctionDef)
                   and n.name == "solution"), None)
  if function is None:
    return None
  numbers = question_numbers(question)
  lines = program.splitlines()
  for statement in function.body:
    number = _given_number(statement)
    if number is None or any(abs(number - n) <= 1e-9 * max(1.0, abs(n)) for n in numbers):
      continue
    text = lines[statement.lineno - 1].strip()
    return (f"ungrounded_number: line {statement.lineno}: {text}: "
            f"{format_value(number)} is not a number in the question")
  return None


def refinement_feedback(result: ExecResult, question: Optional[str] = None,
                        program: Optional[str] = None) -> Optional[str]:
  """The feedback of a program that is refined, or None for one that is not.

  The one definition of stage III's trigger and feedback text (see the module
  docstring): training rows are built only from programs for which this is
  not None, with this text, and inference refines exactly those programs.
  With `question` and `program` (the text the student wrote), a program that
  runs is also checked for givens the question does not contain
  (`grounding_feedback`).
  """
  if not result.ok:
    message = " ".join((result.error or "").split())
    return f"{result.status}: {message}" if message else result.status
  if parse_number(result.value) is None:
    return f"returned {format_value(result.value)}, not a number"
  if question is not None and program is not None:
    return grounding_feedback(question, program)
  return None


def needs_refinement(result: ExecResult, question: Optional[str] = None,
                     program: Optional[str] = None) -> bool:
  """The trigger: `refinement_feedback` has something to say."""
  return refinement_feedback(result, question, program) is not None


def feedback(result: ExecResult) -> str:
  """The feedback of a program that needs refinement.

  Raises:
    ValueError: the program ran and returned a number: it is not refined,
      and there is no feedback that does not need the gold answer.
  """
  text = refinement_feedback(result)
  if text is None:
    raise ValueError(f"returned {format_value(result.value)}: a program that runs and "
                     "returns a number gets no refinement feedback")
  return text
