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


def test_a_prefix_returns_what_its_last_line_assigned():
  check = steps.runnable(HEADER + "a = 3\n    b = a * 5\n   ")
  assert check.kind == steps.RUN and not check.complete
  assert check.program.endswith("    b = a * 5\n    return b\n")
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
      "return a\n")
  assert steps.runnable(HEADER + "a = = 3\n").kind == steps.SYNTAX_ERROR
  check = steps.runnable(HEADER + "a = 3\n    return a", finished=True)
  assert check.complete and check.program == HEADER + "a = 3\n    return a"


def test_the_sandbox_prunes_failing_prefixes():
  prefixes = {
      "ok": HEADER + "a = 3\n    b = a / 2\n",
      "runtime_error": HEADER + "a = 3\n    b = a / 0\n",
      "name": HEADER + "a = 3\n    b = c + 1\n",
      "nan": HEADER + "a = float('nan')\n",
      "text": HEADER + "a = 'three'\n",
  }
  with limits.ExecLimits(workers=1).executor() as executor:
    results = dict(zip(prefixes, executor.run(
        steps.runnable(p).program for p in prefixes.values())))
  assert results["ok"].ok and results["ok"].value == 1.5
  assert results["runtime_error"].status == "runtime_error"
  assert results["name"].status == "runtime_error"
  assert results["nan"].status == "bad_return"
  assert results["text"].status == "bad_return"
