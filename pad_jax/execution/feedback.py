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

A program that runs and returns a finite number is not refined, whatever
the number: only the gold answer could say it is wrong, and inference has no
gold answer. (A plausibility check such as "a negative answer" is left out on
purpose: 146 of GSM-Hard's 1,319 gold answers are negative, so it would send
correct programs back for repair; docs/refinement.md.)
"""

from __future__ import annotations

from typing import Optional

from pad_jax.answers import parse_number
from pad_jax.execution.executor import ExecResult


def format_value(value: object) -> str:
  """A returned value as the feedback writes it (`12`, `2.5`)."""
  number = parse_number(value)
  if number is None:
    return repr(value)
  if number == int(number) and abs(number) < 1e16:
    return str(int(number))
  return f"{number:.6g}"


def refinement_feedback(result: ExecResult) -> Optional[str]:
  """The feedback of a program that is refined, or None for one that is not.

  The one definition of stage III's trigger and feedback text (see the module
  docstring): training rows are built only from programs for which this is
  not None, with this text, and inference refines exactly those programs.
  """
  if not result.ok:
    message = " ".join((result.error or "").split())
    return f"{result.status}: {message}" if message else result.status
  if parse_number(result.value) is None:
    return f"returned {format_value(result.value)}, not a number"
  return None


def needs_refinement(result: ExecResult) -> bool:
  """The trigger: the program did not run or returned no number (`refinement_feedback`)."""
  return refinement_feedback(result) is not None


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
