"""Safe evaluation of arithmetic expressions (a leaf module, standard library only).

The one arithmetic evaluator of the package: the gold-rationale teacher checks
a rationale's equations with it, and the chain-of-thought baseline computes
the values of a straight-line `solution()` program's steps with it.

  evaluate("48 / 2 + 3")                  # 27.0
  evaluate(ast_node, {"apples": 3})       # names come from `env` only
  try_evaluate("1 / 0")                   # None

Only numbers (not booleans), names bound in `env`, the binary operators
`+ - * / // % **` and unary minus (and plus) are evaluated; anything else
(calls, attributes, comparisons, strings, ...) is refused. Limits keep a
hostile or mistaken expression cheap: an exponent's magnitude is at most
`MAX_EXPONENT`, an integer at most `MAX_INT_BITS` bits, and a float result must
be finite (and real: `(-8) ** 0.5` is refused).
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Callable, Mapping, Optional, Union

Number = Union[int, float]

MAX_EXPONENT = 100
MAX_INT_BITS = 4096
MAX_SOURCE_CHARS = 10_000

_BINOPS: dict[type, Callable[[Number, Number], Number]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow}
_UNARY: dict[type, Callable[[Number], Number]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class ArithmeticEvalError(ValueError):
  """The expression is not plain arithmetic, or has no finite real value."""


def evaluate(expression: Union[str, ast.AST],
             env: Optional[Mapping[str, Number]] = None) -> Number:
  """The value of an arithmetic expression.

  Args:
    expression: Python source of one expression, or a parsed AST node (an
      `ast.Expression` or any expression node).
    env: values of the names the expression may use (none if None).

  Returns:
    An int or a finite float (Python's own arithmetic: `7 / 2` is 3.5).

  Raises:
    ArithmeticEvalError: unsupported syntax or name, division by zero, an
      exponent or integer over the limits, or a non-finite or complex value.
  """
  env = env or {}
  try:
    node = _parse(expression) if isinstance(expression, str) else expression
    if isinstance(node, ast.Expression):
      node = node.body
    return _eval(node, env)
  except (ZeroDivisionError, OverflowError) as e:
    raise ArithmeticEvalError(f"{type(e).__name__}: {e}") from None
  except RecursionError:
    raise ArithmeticEvalError("expression nested too deeply") from None


def try_evaluate(expression: Union[str, ast.AST],
                 env: Optional[Mapping[str, Number]] = None) -> Optional[float]:
  """`evaluate` as a float, or None when the expression has no value."""
  try:
    return float(evaluate(expression, env))
  except ArithmeticEvalError:
    return None


def _parse(source: str) -> ast.AST:
  if len(source) > MAX_SOURCE_CHARS:
    raise ArithmeticEvalError(f"expression longer than {MAX_SOURCE_CHARS} characters")
  try:
    return ast.parse(source.strip(), mode="eval")
  except (SyntaxError, ValueError) as e:  # ValueError: a NUL byte in the source.
    raise ArithmeticEvalError(f"not an expression: {e}") from None


def _eval(node: ast.AST, env: Mapping[str, Number]) -> Number:
  if isinstance(node, ast.Constant):
    return _checked(node.value, "constant")
  if isinstance(node, ast.Name):
    if node.id not in env:
      raise ArithmeticEvalError(f"unknown name {node.id!r}")
    return _checked(env[node.id], f"name {node.id!r}")
  if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
    return _UNARY[type(node.op)](_eval(node.operand, env))
  if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
    left, right = _eval(node.left, env), _eval(node.right, env)
    if isinstance(node.op, ast.Pow):
      _check_power(left, right)
    return _checked(_BINOPS[type(node.op)](left, right), "result")
  raise ArithmeticEvalError(f"not arithmetic: {type(node).__name__}")


def _check_power(base: Number, exponent: Number) -> None:
  if abs(exponent) > MAX_EXPONENT:
    raise ArithmeticEvalError(f"exponent {exponent!r} exceeds {MAX_EXPONENT}")
  if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
    if base.bit_length() * exponent > MAX_INT_BITS:
      raise ArithmeticEvalError(f"integer power over {MAX_INT_BITS} bits")


def _checked(value: object, what: str) -> Number:
  """`value` if it is a finite real number within the limits."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ArithmeticEvalError(f"{what} is not a real number: {type(value).__name__}")
  if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
    raise ArithmeticEvalError(f"{what}: integer over {MAX_INT_BITS} bits")
  if isinstance(value, float) and not math.isfinite(value):
    raise ArithmeticEvalError(f"{what} is not finite")
  return value
