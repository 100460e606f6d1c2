"""pad_jax.decoding.stepwise_steps: what a partial program runs as, judged by the real sandbox."""

import pytest

from pad_jax.execution import limits
from pad_jax.decoding import stepwise_steps as steps

HEADER = "def solution():\n    "


@pytest.mark.parametrize("prefix", [
    "def solution():\n   ",                              # header, no body yet
    HEADER + "total = (3 +\n",                           # open bracket
    HEADER + '"""How many\n',                            # open docstring
    HEADER + "for i in range(3):\n",                     # block header
    "# a comment\n",
])
def test_unfinished_statements_are_incomplete(prefix):
  assert steps.runnable(prefix).kind == steps.INCOMPLETE


def test_a_prefix_returns_a_number_whatever_its_last_line_assigned():
  check = steps.runnable(HEADER + "a = 3\n    b = a * 5\n   ")
  assert check.kind == steps.RUN and not check.complete
  # 0 for any value, the value itself only when it is a NaN (pruned).
  assert check.program.endswith("    b = a * 5\n    return b if b != b else 0\n")
  check = steps.runnable(HEADER + '"""How many?"""\n    ')
  assert check.program.endswith("    return 0\n")
  check = steps.runnable(HEADER + "a = 3\n    return a\n")
  assert check.kind == steps.RUN and check.complete
  assert check.program == HEADER + "a = 3\n    return a\n"
  # A `return` inside a block is not the program's end.
  check = steps.runnable(HEADER + "a = 3\n    if a:\n        return a\n")
  assert not check.complete
  # The half line after the last newline is not part of the prefix.
  assert steps.runnable(HEADER + "a = 3\n    b = a +").program.endswith(
      "return a if a != a else 0\n")
  # An annotation without a value binds nothing: it is not returned.
  assert steps.runnable(HEADER + "a: int\n").program.endswith("    return 0\n")
  assert steps.runnable(HEADER + "a = = 3\n").kind == steps.SYNTAX_ERROR
  check = steps.runnable(HEADER + "a = 3\n    return a", finished=True)
  assert check.complete and check.program == HEADER + "a = 3\n    return a"


def _run_prefixes(prefixes):
  with limits.ExecLimits(workers=1, timeout_s=1.0).executor() as executor:
    return dict(zip(prefixes, executor.run(
        steps.runnable(p).program for p in prefixes.values())))


def test_the_sandbox_prunes_failing_prefixes():
  results = _run_prefixes({
      "ok": HEADER + "a = 3\n    b = a / 2\n",
      "runtime_error": HEADER + "a = 3\n    b = a / 0\n",
      "name": HEADER + "a = 3\n    b = c + 1\n",
      "nan": HEADER + "a = float('inf')\n    b = a - a\n",
      "timeout": HEADER + "a = 3\n    while a:\n        a += 1\n    b = a\n",
  })
  assert results["ok"].ok
  assert results["runtime_error"].status == "runtime_error"
  assert results["name"].status == "runtime_error"
  assert results["nan"].status == "bad_return"  # inf - inf: an invalid operation
  assert results["timeout"].status == "timeout"


VALUES = ["[3, 4, 5]", "{'apples': 3, 'pears': 4}", "'dollars'", "(1, 2)", "{1, 2}", "True",
          "None", "float('inf')", "10 ** 400", "[float('nan')]", "range(3)", "3 + 4j",
          "__import__('fractions').Fraction(1, 3)",
          "__import__('collections').Counter('aab')"]


def test_a_prefix_holding_any_other_value_is_kept():
  """A list, a dict, a string (any value but a NaN) assigned by the last line never
  prunes the step, nor the next one (`x += ...` included)."""
  prefixes = {}
  for value in VALUES:
    prefixes[value] = HEADER + f"x = {value}\n"
    prefixes[value + " then"] = HEADER + f"x = {value}\n    y = 2\n"
  prefixes["augmented"] = HEADER + "x = [3]\n    x += [4]\n"
  prefixes["annotated"] = HEADER + "x: list = [3]\n"
  results = _run_prefixes(prefixes)
  assert all(r.ok for r in results.values()), {k: r for k, r in results.items() if not r.ok}


def test_a_program_built_on_a_list_a_dict_and_a_string_keeps_every_step():
  lines = ["prices = [3, 4, 5]", "unit = 'dollars'", "stock = {'pens': 2, 'books': 3}",
           "total = sum(prices) * stock['books']", "label = f'{total} {unit}'", "return total"]
  prefixes = {i: HEADER + "\n    ".join(lines[:i]) + "\n" for i in range(1, len(lines) + 1)}
  checks = {i: steps.runnable(p) for i, p in prefixes.items()}
  assert [c.complete for c in checks.values()] == [False] * (len(lines) - 1) + [True]
  with limits.ExecLimits(workers=1).executor() as executor:
    results = executor.run(c.program for c in checks.values())
  assert all(r.ok for r in results), results
  assert results[-1].value == 36  # the whole program is judged by its answer
  # The whole program still must return a finite number.
  with limits.ExecLimits(workers=1).executor() as executor:
    (text,) = executor.run([steps.runnable(prefixes[2] + "    return unit\n").program])
  assert text.status == "bad_return"
