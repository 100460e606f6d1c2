"""Tests for pad_jax.execution.extraction on hand-written messy completions."""

import textwrap

import pytest

from pad_jax.execution.extraction import extract_program

FENCE = "```"


def _run(program):
  namespace = {}
  exec(compile(program, "<extracted>", "exec"), namespace)  # Our own test inputs only.
  return namespace["solution"]()


# (name, completion, expected solution() value); each completion is hand-written.
CASES = [
    ("plain_program", """
def solution():
    apples = 5
    eaten = 2
    result = apples - eaten
    return result
""", 3),
    ("fence_python", f"""{FENCE}python
def solution():
    result = 6 * 7
    return result
{FENCE}""", 42),
    ("fence_no_language", f"""{FENCE}
def solution():
    return 10 + 5
{FENCE}""", 15),
    ("fence_py_tag", f"""{FENCE}py
def solution():
    return 9
{FENCE}""", 9),
    ("fence_Python3_with_attrs", f"""{FENCE}Python3 {{linenos=true}}
def solution():
    return 3 ** 2
{FENCE}""", 9),
    ("tilde_fence", """~~~python
def solution():
    return 100 // 7
~~~""", 14),
    ("prose_before", f"""Sure! Here is a program that solves the problem step by step.

{FENCE}python
def solution():
    pens = 12
    return pens * 3
{FENCE}""", 36),
    ("prose_after", f"""{FENCE}python
def solution():
    return 4 + 4
{FENCE}

This function adds the two numbers, so the answer is 8.""", 8),
    ("prose_both_sides_no_fence", """Let me write the code.
def solution():
    cookies = 24
    friends = 4
    return cookies / friends
This returns 6 cookies each. Hope that helps!""", 6),
    ("print_call_after", f"""{FENCE}python
def solution():
    return 11 * 2

print(solution())
{FENCE}""", 22),
    ("main_guard", f"""{FENCE}python
def solution():
    return 50 - 8


if __name__ == "__main__":
    print(solution())
{FENCE}""", 42),
    ("asserts_after", f"""{FENCE}python
def solution():
    return 2 * 21

assert solution() == 42
assert isinstance(solution(), int)
{FENCE}""", 42),
    ("unit_test_function", f"""{FENCE}python
def solution():
    return 7 * 6

def test_solution():
    assert solution() == 42

test_solution()
{FENCE}""", 42),
    ("two_blocks_second_is_usage", f"""Here is the function:
{FENCE}python
def solution():
    return 30 + 12
{FENCE}
You can run it like this:
{FENCE}python
print(solution())  # 42
{FENCE}""", 42),
    ("two_blocks_corrected_version", f"""First attempt:
{FENCE}python
def solution():
    return 1 + 1
{FENCE}
Wait, that ignores the discount. Corrected:
{FENCE}python
def solution():
    price = 20
    discount = 5
    return price - discount
{FENCE}""", 15),
    ("helper_in_same_block", f"""{FENCE}python
def percent_of(value, pct):
    return value * pct / 100

def solution():
    return percent_of(200, 15)
{FENCE}""", 30),
    ("helper_in_other_block", f"""A helper first:
{FENCE}python
def area(w, h):
    return w * h
{FENCE}
And the solution:
{FENCE}python
def solution():
    return area(3, 4) + area(1, 2)
{FENCE}""", 14),
    ("import_needed", f"""{FENCE}python
import math

def solution():
    return math.ceil(17 / 5)
{FENCE}""", 4),
    ("from_import_in_other_block", f"""{FENCE}python
from fractions import Fraction
{FENCE}
{FENCE}python
def solution():
    return float(Fraction(3, 4) * 8)
{FENCE}""", 6),
    ("unused_import_dropped_but_runs", f"""{FENCE}python
import os
import math

def solution():
    return math.floor(9.7)
{FENCE}""", 9),
    ("module_constant_needed", f"""{FENCE}python
PRICE_PER_TICKET = 8

def solution():
    tickets = 5
    return tickets * PRICE_PER_TICKET
{FENCE}""", 40),
    ("indented_whole_block", """Here you go:

    def solution():
        dogs = 3
        legs = dogs * 4
        return legs
""", 12),
    ("tabs_indentation", "def solution():\n\tx = 5\n\tif x > 3:\n\t\tx += 1\n\treturn x\n", 6),
    ("crlf_line_endings", "```python\r\ndef solution():\r\n    return 5 * 5\r\n```\r\n", 25),
    ("nbsp_indentation", "def solution():\n\u00a0\u00a0\u00a0\u00a0return 81 // 9\n", 9),
    ("flush_body_repair", """def solution():
apples = 10
oranges = 5
return apples + oranges
""", 15),
    ("repl_transcript", """>>> def solution():
...     boxes = 4
...     return boxes * 6
...
>>> solution()
24""", 24),
    ("no_return_result_var", f"""{FENCE}python
def solution():
    hours = 8
    rate = 15
    result = hours * rate
{FENCE}""", 120),
    ("print_instead_of_return", f"""{FENCE}python
def solution():
    total = 3 + 4
    print(total)
{FENCE}""", 7),
    ("script_without_function", f"""{FENCE}python
books = 12
read = 5
result = books - read
print(result)
{FENCE}""", 7),
    ("script_answer_variable", """money = 50
spent = 20 + 5
answer = money - spent""", 25),
    ("bare_expression_fenced", f"""{FENCE}
48 / 2 + 48
{FENCE}""", 72),
    ("bare_expression_plain", "3 * (4 + 2)", 18),
    ("answer_is_sentence", "The answer is 1,250.", 1250),
    ("docstring_and_comments_kept", f'''{FENCE}python
def solution():
    """Tom has 3 bags with 4 apples each. How many apples?"""
    bags = 3  # bags Tom has
    per_bag = 4
    # total apples
    result = bags * per_bag
    return result
{FENCE}''', 12),
    ("return_type_annotation", f"""{FENCE}python
def solution() -> float:
    return 7 / 2
{FENCE}""", 3.5),
    ("loop_and_branch", f"""{FENCE}python
def solution():
    total = 0
    for day in range(1, 8):
        if day % 2 == 0:
            total += day
        else:
            total += 1
    return total
{FENCE}""", 16),
    ("truncated_closing_fence", f"""Here is the code:
{FENCE}python
def solution():
    return 64 ** 0.5""", 8),
    ("text_fence_ignored", f"""{FENCE}text
The result is computed below.
{FENCE}
{FENCE}python
def solution():
    return 13
{FENCE}""", 13),
    ("indented_prose_after_function", """def solution():
    return 5 + 6
   (this adds five and six)
""", 11),
    ("helper_class", f"""{FENCE}python
class Wallet:
    def __init__(self, cash):
        self.cash = cash

def solution():
    return Wallet(40).cash / 4
{FENCE}""", 10),
    ("result_assigned_from_solution_dropped", f"""{FENCE}python
def solution():
    result = 9 * 9
    return result

result = solution()
print(f"The answer is {{result}}")
{FENCE}""", 81),
    ("chatty_with_markdown_list", f"""**Step-by-step:**
1. Start with 10 marbles.
2. Give away 3.

{FENCE}python
def solution():
    marbles = 10
    given = 3
    return marbles - given
{FENCE}

**Answer:** 7 marbles.""", 7),
]


@pytest.mark.parametrize("name,completion,expected", CASES, ids=[c[0] for c in CASES])
def test_extracts_runnable_program(name, completion, expected):
  program = extract_program(completion)
  assert program is not None, name
  assert "def solution" in program
  assert _run(program) == pytest.approx(expected)
  assert extract_program(program) == program  # Idempotent: students emit extracted text.


def test_has_at_least_forty_cases():
  assert len(CASES) >= 40


@pytest.mark.parametrize("completion", [
    None,
    "",
    "   \n\n",
    "I'm sorry, I can't help with that.",
    "Let me think about this problem. The farmer has some cows.",
    f"{FENCE}text\nno code here\n{FENCE}",
    "def solution(:\n    return",
])
def test_no_program_gives_none(completion):
  assert extract_program(completion) is None


def test_noise_is_removed():
  completion = textwrap.dedent(f"""\
      {FENCE}python
      import math

      def solution():
          return 4

      print(solution())
      assert solution() == 4
      {FENCE}""")
  program = extract_program(completion)
  assert "print(" not in program and "assert" not in program and "import math" not in program


def test_helper_kept_and_unrelated_dropped():
  completion = textwrap.dedent("""\
      def unused():
          return 0

      def double(x):
          return 2 * x

      def solution():
          return double(21)
      """)
  program = extract_program(completion)
  assert "def double" in program and "def unused" not in program
  assert program.index("def double") < program.index("def solution")


def test_comments_and_docstring_preserved():
  program = extract_program(CASES[[c[0] for c in CASES].index("docstring_and_comments_kept")][1])
  assert '"""Tom has 3 bags' in program
  assert "# total apples" in program and "# bags Tom has" in program
