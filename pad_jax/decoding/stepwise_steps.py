"""Partial programs: lines, and the runnable check of a prefix (text only).

A reasoning step is one line of the program. A partial program (a prefix) is
checked by executing it: `runnable(prefix)` turns the prefix into a complete
`solution()` program that runs the prefix's lines and then returns a number
whatever the type of the value the last line assigned (a list, a dict, a
string, `inf` are values a correct program holds on its way to the answer):
`return x if x != x else 0` for a last line `x = ...`. So a step is pruned
only when it does not run: a syntax error, an exception, a timeout (the
executor's statuses, which the search counts by reason); the one value
pruned is a NaN (`x != x`, returned, the executor's `bad_return`), the
result of an invalid float operation (`inf - inf`, `0 * inf`) that Python
does not raise for. A whole program (its last line `solution()`'s `return`,
or ended by the model) runs as written and must return a finite number.
A prefix whose last statement is not finished yet (an open bracket, a block
header without its body, an open triple-quoted string) is `incomplete`:
kept unexecuted until a later line completes it.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Optional

# SyntaxError messages of a prefix that more lines can still complete.
_INCOMPLETE = ("expected an indented block", "was never closed",
               "unterminated triple-quoted string", "unexpected EOF")

RUN, INCOMPLETE, SYNTAX_ERROR = "run", "incomplete", "syntax_error"


@dataclasses.dataclass(frozen=True)
class Check:
  """What to do with a prefix.

  Attributes:
    kind: `run` (execute `program`), `incomplete` (keep, do not execute) or
      `syntax_error` (prune; `error` says why).
    program: the program to execute (`run` only).
    complete: the prefix is a whole program: its last line is `solution()`'s
      top-level `return` (the search stops expanding it).
    error: the syntax error (`syntax_error` only).
  """
  kind: str
  program: Optional[str] = None
  complete: bool = False
  error: Optional[str] = None


def complete_lines(text: str) -> str:
  """`text` up to and including its last newline (a newline token of a BPE
  vocabulary may carry the next line's indentation)."""
  end = text.rfind("\n")
  return text[:end + 1] if end >= 0 else ""


def last_line(text: str) -> str:
  """The last complete line of `text` (without its newline)."""
  lines = complete_lines(text).splitlines()
  return lines[-1] if lines else ""


def _solution(tree: ast.Module) -> Optional[ast.FunctionDef]:
  for node in tree.body:
    if isinstance(node, ast.FunctionDef) and node.name == "solution":
      return node
  return None


def _assigned_name(statement: ast.stmt) -> Optional[str]:
  if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
    target = statement.targets[0]
  elif isinstance(statement, ast.AugAssign) or (
      isinstance(statement, ast.AnnAssign) and statement.value is not None):
    target = statement.target
  else:
    return None
  return target.id if isinstance(target, ast.Name) else None


def runnable(prefix: str, finished: bool = False) -> Check:
  """How to check `prefix` (its complete lines) in the sandbox.

  Args:
    prefix: the partial program text.
    finished: the model ended the program here (EOS): run it as written.

  Returns:
    A `Check`.
  """
  source = prefix if finished else complete_lines(prefix)
  try:
    tree = ast.parse(source)
  except SyntaxError as e:
    message = f"line {e.lineno}: {e.msg}"
    if not finished and any(m in e.msg for m in _INCOMPLETE):
      return Check(INCOMPLETE)
    return Check(SYNTAX_ERROR, error=message)
  if finished:
    return Check(RUN, program=source, complete=True)
  func = _solution(tree)
  if func is None:
    if not tree.body:
      return Check(INCOMPLETE)  # blank lines and comments only
    # Module-level code before `solution()`: it must run.
    return Check(RUN, program=source + "\n\ndef solution():\n    return 0\n")
  if tree.body[-1] is not func:
    return Check(RUN, program=source, complete=True)  # code after solution()
  last = func.body[-1]
  indent = " " * func.body[0].col_offset
  if isinstance(last, ast.Return):
    return Check(RUN, program=source, complete=True)
  return Check(RUN, program=source + _prefix_return(_assigned_name(last), indent))


def _prefix_return(name: Optional[str], indent: str) -> str:
  """The line that ends a prefix's runnable program.

  It returns 0 for every value of `name` but a NaN (`name != name`), which
  it returns for the executor to prune (`bad_return`): a list, a dict, a
  string, a bool, `inf` or a huge integer never prune a step. After a line
  that assigns no name: `return 0`.
  """
  if name is None:
    return f"{indent}return 0\n"
  return f"{indent}return {name} if {name} != {name} else 0\n"
