"""What the interpreter says about a faulty program: the refinement feedback.

The feedback is the executor's own report (`ExecResult`), never the gold
answer:

* a program that failed: its status and message, which name the exception
  and the failing line, e.g.
  `runtime_error: NameError: name 'total_cost' is not defined (line 4: ...)`;
* a program that ran but is wrong (training data only, where the gold
  answer is known): `returned 47.5, expected a different answer`.

At inference the gold answer is not used: only programs that do not run, or
return no number, get feedback (`needs_refinement`).
"""

from __future__ import annotations

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


def feedback(result: ExecResult) -> str:
  """The feedback for one executed faulty program (see the module docstring)."""
  if result.ok:
    return f"returned {format_value(result.value)}, expected a different answer"
  message = " ".join((result.error or "").split())
  return f"{result.status}: {message}" if message else result.status


def needs_refinement(result: ExecResult) -> bool:
  """Inference's trigger: the program did not run or returned no number."""
  return not result.ok or parse_number(result.value) is None
