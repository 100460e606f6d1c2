"""PAL-style few-shot prompts that ask a teacher LLM for `def solution()`.

The exemplars below were written for this project (they are not copied from a
published prompt). Each shows the target style: a docstring restating the
question, one commented step per line, named variables, `result = ...` and
`return result`.

`PROMPT_VARIANTS` (>= 8) differ in instruction wording, which exemplars they
show and in what order: sampling a question under several variants is the
data augmentation PaD uses. `build_messages(question, variant)` gives the
chat messages; `prompt_fingerprint(variant)` changes whenever a variant's
text changes, so cached completions are never reused for a new prompt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from pad_jax.errors import ConfigError

_EXEMPLARS = (
    ("A bakery sells muffins for $3 each. On Monday it sold 14 muffins and on "
     "Tuesday it sold twice as many. How much money did the bakery make from "
     "muffins on those two days?",
     '''def solution():
    """A bakery sells muffins for $3 each. On Monday it sold 14 muffins and on Tuesday it sold twice as many. How much money did the bakery make from muffins on those two days?"""
    price_per_muffin = 3
    muffins_monday = 14
    # Tuesday's sales are twice Monday's.
    muffins_tuesday = muffins_monday * 2
    # Muffins sold over both days.
    muffins_total = muffins_monday + muffins_tuesday
    # Money made from all muffins.
    money = muffins_total * price_per_muffin
    result = money
    return result'''),
    ("Priya reads 18 pages of a 240-page novel every evening. After 9 evenings, "
     "how many pages does she still have to read?",
     '''def solution():
    """Priya reads 18 pages of a 240-page novel every evening. After 9 evenings, how many pages does she still have to read?"""
    pages_per_evening = 18
    novel_pages = 240
    evenings = 9
    # Pages read so far.
    pages_read = pages_per_evening * evenings
    # Pages that remain.
    pages_left = novel_pages - pages_read
    result = pages_left
    return result'''),
    ("A school orders 7 boxes of markers with 24 markers in each box. The "
     "markers are shared equally among 12 classrooms. How many markers does "
     "each classroom get?",
     '''def solution():
    """A school orders 7 boxes of markers with 24 markers in each box. The markers are shared equally among 12 classrooms. How many markers does each classroom get?"""
    boxes = 7
    markers_per_box = 24
    classrooms = 12
    # All the markers the school ordered.
    markers_total = boxes * markers_per_box
    # Each classroom's equal share.
    markers_per_classroom = markers_total / classrooms
    result = markers_per_classroom
    return result'''),
    ("Omar's phone plan costs $35 a month plus $0.10 for every text message "
     "over 200. In March he sent 260 texts. What was his bill for March?",
     '''def solution():
    """Omar's phone plan costs $35 a month plus $0.10 for every text message over 200. In March he sent 260 texts. What was his bill for March?"""
    monthly_fee = 35
    price_per_extra_text = 0.10
    included_texts = 200
    texts_sent = 260
    # Texts beyond the included ones.
    extra_texts = texts_sent - included_texts
    # Charge for the extra texts.
    extra_charge = extra_texts * price_per_extra_text
    # The bill is the fee plus the extra charge.
    bill = monthly_fee + extra_charge
    result = bill
    return result'''),
    ("A garden has 5 rows of tomato plants with 8 plants in each row. A storm "
     "destroys 25% of the plants. How many plants are left?",
     '''def solution():
    """A garden has 5 rows of tomato plants with 8 plants in each row. A storm destroys 25% of the plants. How many plants are left?"""
    rows = 5
    plants_per_row = 8
    percent_destroyed = 25
    # Plants before the storm.
    plants = rows * plants_per_row
    # Plants the storm destroyed.
    plants_destroyed = plants * percent_destroyed / 100
    # Plants that survived.
    plants_left = plants - plants_destroyed
    result = plants_left
    return result'''),
    ("Lena is 4 years older than her brother Max. In 6 years the sum of their "
     "ages will be 40. How old is Max now?",
     '''def solution():
    """Lena is 4 years older than her brother Max. In 6 years the sum of their ages will be 40. How old is Max now?"""
    age_gap = 4
    years_ahead = 6
    sum_of_ages_later = 40
    # Their ages now add up to the later sum minus 6 years for each of them.
    sum_of_ages_now = sum_of_ages_later - 2 * years_ahead
    # Without the gap, the sum is twice Max's age.
    max_age = (sum_of_ages_now - age_gap) / 2
    result = max_age
    return result'''),
)

_INSTRUCTIONS = (
    "You write Python programs that solve grade-school math word problems. "
    "Answer with one function `def solution():` whose docstring restates the "
    "question, with one commented step per line, descriptive variable names, "
    "and that ends with `result = ...` and `return result`.",
    "Solve each math word problem by writing a Python function named "
    "`solution` that takes no arguments. Restate the question in its "
    "docstring, put a short comment before every computation, name every "
    "quantity, and finish with `result = ...` then `return result`.",
    "You are a careful math tutor who explains with code. For the problem, "
    "write `def solution():` in Python: a docstring with the problem, the "
    "given numbers as named variables first, then one commented step per "
    "line, then `result = ...` and `return result`. Output only the code.",
    "Translate the word problem into a short Python program. Define "
    "`def solution():` with the question as its docstring; bind each number "
    "from the question to a named variable, compute step by step with a "
    "comment per step, assign the final answer to `result` and return it.",
)


@dataclasses.dataclass(frozen=True)
class PromptVariant:
  """One prompt: an instruction and an ordered subset of the exemplars."""
  index: int
  instruction: int
  exemplars: tuple[int, ...]


PROMPT_VARIANTS: tuple[PromptVariant, ...] = (
    PromptVariant(0, 0, (0, 1, 2, 3)),
    PromptVariant(1, 1, (3, 2, 1, 0)),
    PromptVariant(2, 2, (4, 5, 0, 2)),
    PromptVariant(3, 3, (1, 3, 5)),
    PromptVariant(4, 0, (5, 4, 3, 2, 1, 0)),
    PromptVariant(5, 1, (2, 4, 1)),
    PromptVariant(6, 2, (0, 5, 3, 1)),
    PromptVariant(7, 3, (4, 2, 0, 5)),
    PromptVariant(8, 0, ()),  # Zero-shot: instruction only.
    PromptVariant(9, 1, (1, 0, 4, 3, 5, 2)),
)
NUM_VARIANTS = len(PROMPT_VARIANTS)


def _user_turn(question: str) -> str:
  return f"Question: {' '.join(question.split())}\n\nWrite `def solution():`."


def build_messages(question: str, variant: int) -> list[dict[str, str]]:
  """Chat messages for `question` under prompt `variant`.

  Args:
    question: the word problem.
    variant: an index into `PROMPT_VARIANTS`.

  Returns:
    OpenAI chat messages: the instruction as the system message, each
    exemplar as a user/assistant pair, then the question.
  """
  if not 0 <= variant < NUM_VARIANTS:
    raise ConfigError(f"prompt variant {variant} out of range [0, {NUM_VARIANTS})")
  spec = PROMPT_VARIANTS[variant]
  messages = [{"role": "system", "content": _INSTRUCTIONS[spec.instruction]}]
  for index in spec.exemplars:
    exemplar_question, program = _EXEMPLARS[index]
    messages.append({"role": "user", "content": _user_turn(exemplar_question)})
    messages.append({"role": "assistant", "content": f"```python\n{program}\n```"})
  messages.append({"role": "user", "content": _user_turn(question)})
  return messages


def prompt_fingerprint(variant: int) -> str:
  """A short hash of the variant's full template text (changes with it)."""
  template = build_messages("{question}", variant)
  return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


def parse_variants(spec: str) -> list[int]:
  """`"all"` or a comma list such as `"0,3,5"` -> variant indices.

  Raises:
    ValueError: an unknown or out-of-range variant.
  """
  spec = spec.strip()
  if spec in ("", "all"):
    return list(range(NUM_VARIANTS))
  variants = []
  for part in spec.split(","):
    try:
      value = int(part)
    except ValueError:
      raise ConfigError(f"--prompt_variants: {part!r} is not an integer") from None
    if not 0 <= value < NUM_VARIANTS:
      raise ConfigError(f"--prompt_variants: {value} out of range [0, {NUM_VARIANTS})")
    variants.append(value)
  return variants
