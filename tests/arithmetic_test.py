"""The one arithmetic evaluator: values, names, and what it refuses."""

import ast

import pytest

from pad_jax import arithmetic


@pytest.mark.parametrize("source, expected", [
    ("48 / 2", 24.0),
    ("7 // 2", 3),
    ("7 % 3", 1),
    ("2 ** 10", 1024),
    ("-3 + +4", 1),
    ("(1 + 2) * 3 - 4 / 8", 8.5),
    ("2 ** -1", 0.5),
    ("  10 - 3 ", 7),
])
def test_evaluates_python_arithmetic(source, expected):
  assert arithmetic.evaluate(source) == expected
  assert type(arithmetic.evaluate(source)) is type(expected)


def test_names_come_from_env_only():
  assert arithmetic.evaluate("apples * 4 - eaten", {"apples": 3, "eaten": 1}) == 11
  node = ast.parse("x / y", mode="eval")
  assert arithmetic.evaluate(node, {"x": 1, "y": 4}) == 0.25
  assert arithmetic.evaluate(node.body, {"x": 1, "y": 4}) == 0.25
  with pytest.raises(arithmetic.ArithmeticEvalError, match="unknown name 'z'"):
    arithmetic.evaluate("z + 1", {"x": 1})


@pytest.mark.parametrize("source", [
    "__import__('os').system('true')",  # calls
    "(1).real",                          # attributes
    "1 < 2",                             # comparisons
    "'a' * 3",                           # strings
    "True + 1",                          # booleans are not numbers here
    "1j * 2",                            # complex
    "[1, 2]",
    "1 << 3",                            # bit operators
    "x := 3",
    "1 +",                               # not an expression
    "1; 2",
    "1 / 0",
    "5 % 0",
    "0 ** -1",
    "2 ** 101",                          # exponent over the limit
    "2 ** 50 ** 2",
    "(10 ** 100) ** 100",                # integer over the bit limit
    "10.0 ** 100 * 1e300",               # not finite
    "1e309",
    "(-8) ** 0.5",                       # complex result
    "(" * 1000 + "1" + ")" * 1000,       # nested too deeply for the parser
    "-" * 5000 + "1",                    # nested too deeply for the evaluator
    "1 + " * 6000 + "1",                 # too long
])
def test_refuses_everything_else(source):
  with pytest.raises(arithmetic.ArithmeticEvalError):
    arithmetic.evaluate(source)
  assert arithmetic.try_evaluate(source) is None


def test_env_values_are_checked_too():
  with pytest.raises(arithmetic.ArithmeticEvalError, match="not a real number"):
    arithmetic.evaluate("x + 1", {"x": "3"})
  with pytest.raises(arithmetic.ArithmeticEvalError, match="not finite"):
    arithmetic.evaluate("x", {"x": float("nan")})


def test_try_evaluate_returns_a_float():
  assert arithmetic.try_evaluate("6 // 4") == 1.0
  assert isinstance(arithmetic.try_evaluate("6 // 4"), float)


def test_errors_are_value_errors():
  assert issubclass(arithmetic.ArithmeticEvalError, ValueError)
