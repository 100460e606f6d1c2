r"""The offline gold-rationale teacher: GSM8K rationales -> `def solution()`.

GSM8K's worked solutions mark their arithmetic with calculator annotations,
`Natalia sold 48/2 = <<48/2=24>>24 clips in May.`; many also do some of it
in plain text (`40 / 10 = 4 days`, `$50 − $6 = $44`). `gold_program` turns
every such equation into one program step, in the rationale's order:

* the question's quantities that the steps use are bound to named variables
  first (`friends = 48`, the name taken from the words after the number);
* each step is `name = expression`, where a number that an earlier step
  computed is written as that step's variable and a number from the question
  as the question variable, never retyped; other numbers stay literals;
* the rationale sentence (without the calculator marks) is the step's
  comment; the docstring restates the question;
* `result` is the step whose value is the gold answer (normally the last);
  steps it does not depend on are dropped.

Values are matched numerically, so the program reproduces the rationale's own
rounding (`round(10 / 3, 2)` when the text says 3.33). A rationale with no
usable arithmetic gives None. The program is verified by executing it like
any teacher's (see `pad_jax.teacher.verify`).
"""

from __future__ import annotations

import builtins
import dataclasses
import keyword
import math
import re
from typing import Any, Optional, Sequence

from pad_jax import arithmetic

TEACHER_NAME = "gold"

_MARK_RE = re.compile(r"<<([^<>]*)>>")
_WORD_NUMBERS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90, "hundred": 100, "dozen": 12,
}
# One token: a calculator mark, a number ($, commas, %, leading dot), an
# operator (ASCII or typographic), a parenthesis, `=`, or a word.
_TOKEN_RE = re.compile(r"""
    (?P<mark>\x00\d+\x00)
  | (?P<num>\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?|\$?\.\d+%?)
  | (?P<op>[+\-*/×÷−–^⋅·])
  | (?P<lp>\()
  | (?P<rp>\))
  | (?P<eq>=)
  | (?P<word>[A-Za-z][A-Za-z'’]*)
  | (?P<other>\S)
""", re.VERBOSE)
_OPS = {"+": "+", "-": "-", "−": "-", "–": "-", "*": "*", "×": "*", "⋅": "*", "·": "*",
        "x": "*", "X": "*", "/": "/", "÷": "/", "^": "**"}
_STOP = frozenset("""a an the of her his their its our my your each every per than as
  in on at for to and or but is are was were be been will would can could has have had do does
  did this that these those it they he she we you i so then there which who what how many much
  with from by after before into out up about all also only just now if when than other
  another one some new same by each another
  therefore thus hence since because means get gets got make makes made take takes took
  need needs needed spend spends spent cost costs pay pays paid buy buys bought sell sells sold
  give gives gave find found use used equal equals together times divided plus minus
  multiplied subtracted added""".split())
_CONNECTORS = frozenset(["in", "per", "of", "for", "on", "at", "to", "from", "with"])
_DETERMINERS = frozenset(["his", "her", "their", "its", "the", "a", "an", "my", "our", "your"])
_RESERVED = set(keyword.kwlist) | set(dir(builtins)) | {"result", "solution", "math"}
_MAX_NAME_WORDS = 3


@dataclasses.dataclass
class _Quantity:
  """A named value: a question quantity or a step result."""
  base: str               # Preferred variable name (made unique on output).
  value: float            # What the program computes.
  stated: float           # What the text says (may be rounded).
  expression: str = ""    # Empty for question quantities.
  comment: str = ""
  deps: tuple[int, ...] = ()
  is_question: bool = False
  sentence: str = ""
  name: str = ""


@dataclasses.dataclass
class _Token:
  kind: str
  text: str
  value: Optional[float] = None
  percent: bool = False


def gold_program(example: Any, include_docstring: bool = True) -> Optional[str]:
  """Converts a GSM8K example's rationale into a `def solution()` program.

  Args:
    example: anything with `question`, `rationale` (GSM8K's text with
      `<<expr=result>>` marks; a trailing `#### N` line is ignored) and
      `answer` (the gold number), e.g. `pad_jax.data.benchmarks.Example`.
    include_docstring: restate the question as the function's docstring.

  Returns:
    The program source, or None when the rationale has no arithmetic that
    reaches the gold answer.
  """
  rationale = getattr(example, "rationale", None)
  if not rationale:
    return None
  builder = _Builder(example.question, float(example.answer))
  for line in rationale.split("\n"):
    if line.strip().startswith("####"):
      continue
    builder.add_line(line)
  return builder.program(include_docstring)


def gold_programs(examples: Sequence[Any]) -> list[Optional[str]]:
  """`gold_program` for each example (None where there is none)."""
  return [gold_program(e) for e in examples]


class _Builder:
  """Accumulates the steps of one program."""

  def __init__(self, question: str, gold: float):
    self.question = " ".join(question.split())
    self.gold = gold
    self.names: set[str] = set()
    self.question_quantities = self._question_quantities(self.question)
    self.steps: list[_Quantity] = []
    self.used_question: list[_Quantity] = []
    self.sentence_words: set[str] = set()

  # -- question ------------------------------------------------------------

  def _question_quantities(self, question: str) -> list[_Quantity]:
    quantities = []
    pattern = re.compile(r"(\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?|\$?\.\d+%?)|\b([A-Za-z]+)\b")
    for match in pattern.finditer(question):
      if match.group(1):
        value = _number_value(match.group(1))
      else:
        value = _WORD_NUMBERS.get(match.group(2).lower())
      if value is None:
        continue
      after = question[match.end():]
      before = question[:match.start()]
      name_words = _content_words(after, from_start=True) or _content_words(before, from_start=False)
      quantities.append(_Quantity(base="_".join(name_words) or "quantity", value=value,
                                  stated=value, is_question=True))
    return quantities

  # -- rationale lines -----------------------------------------------------

  def add_line(self, line: str) -> None:
    """Turns every equation in one rationale line into steps."""
    marks = _MARK_RE.findall(line)
    comment = " ".join(_MARK_RE.sub("", line).split())
    if not comment:
      return
    self.sentence_words = set(re.findall(r"[a-z]+", comment.lower())) - _STOP
    encoded = line
    for i in range(len(marks)):
      encoded = _MARK_RE.sub(f"\x00{i}\x00", encoded, count=1)
    tokens = _tokenize(encoded)
    first_step = len(self.steps)
    consumed: set[int] = set()
    for position, token in enumerate(tokens):
      if token.kind == "mark" and position not in consumed:
        self._add_mark(marks[int(token.text.strip("\x00"))], tokens, position)
      elif token.kind == "eq":
        mark_position = self._add_text_equation(tokens, position, marks)
        if mark_position is not None:
          consumed.add(mark_position)
    if len(self.steps) > first_step:
      self.steps[first_step].comment = comment

  def _add_mark(self, mark: str, tokens: list[_Token], position: int) -> None:
    if "=" not in mark:
      return
    expression, stated = mark.rsplit("=", 1)
    stated_value = _number_value(stated)
    expr_tokens = _tokenize(expression)
    if stated_value is None or not _is_arithmetic(expr_tokens):
      return
    after = position + 1
    if after < len(tokens) and tokens[after].kind == "num":
      after += 1  # The result the text repeats after the mark.
    self._add_step(expr_tokens, stated_value, tokens, after, anchor=position)

  def _add_text_equation(self, tokens: list[_Token], position: int,
                         marks: list[str]) -> Optional[int]:
    """`40 / 10 = 4 days`: an equation written without a calculator mark.

    Also `1/2*110 = <<55=55>>55`, where the mark holds no arithmetic and the
    text does. Returns the position of a mark this replaces, if any.
    """
    following = [t for t in tokens[position + 1:position + 3]]
    if following and following[0].kind == "mark":
      mark = marks[int(following[0].text.strip("\x00"))]
      if "=" not in mark or _is_arithmetic(_tokenize(mark.rsplit("=", 1)[0])) and any(
          t.kind == "op" for t in _tokenize(mark.rsplit("=", 1)[0])):
        return None
      stated_value = _number_value(mark.rsplit("=", 1)[1])
      lhs = _left_expression(tokens, position)
      if lhs is None or stated_value is None:
        return None
      after = position + 2
      if after < len(tokens) and tokens[after].kind == "num":
        after += 1
      if self._add_step(lhs, stated_value, tokens, after, anchor=position) is None:
        return None
      return position + 1
    if not following or following[0].kind != "num":
      return None
    if len(following) > 1 and following[1].kind in ("op", "lp", "mark"):
      return None  # `= 6 / 3 = 2`: the right side is itself an expression.
    lhs = _left_expression(tokens, position)
    if lhs is None:
      return None
    stated = following[0]
    self._add_step(lhs, stated.value, tokens, position + 2, percent_result=stated.percent,
                   anchor=position)
    return None

  def _add_step(self, expr_tokens: list[_Token], stated: float, tokens: list[_Token],
                after: int, percent_result: bool = False,
                anchor: Optional[int] = None) -> Optional[_Quantity]:
    rendered, value, deps = self._render(expr_tokens)
    if rendered is None:
      return None
    if percent_result and not _close(value, stated) and _close(value * 100, stated):
      rendered, value = f"({rendered}) * 100", value * 100
    rendered, value = _reconcile(rendered, value, stated)
    if rendered is None:
      return None
    base = _step_name(tokens, after, len(self.steps), stated, anchor)
    step = _Quantity(base=base, value=value,
                     stated=stated, expression=rendered, deps=tuple(deps),
                     sentence=" ".join(t.text for t in tokens if t.kind in ("word", "num")))
    self.steps.append(step)
    return step

  def _render(self, expr_tokens: list[_Token]) -> tuple[Optional[str], float, list[str]]:
    """Source for `expr_tokens` with earlier values replaced by their names."""
    pieces, python, deps = [], [], []
    used_here: set[int] = set()
    previous = None
    for token in expr_tokens:
      if token.kind == "num":
        if previous in ("num", "rp"):
          pieces.append("*")
          python.append("*")
        ref = self._reference(token.value, used_here)
        if ref is not None:
          pieces.append(f"\x01{id(ref)}\x01")  # Named on output.
          deps.append(id(ref))
          value = ref.value
        else:
          pieces.append(_literal(token.value))
          value = token.value
        if token.percent:
          pieces[-1] = f"({pieces[-1]} / 100)"
          value /= 100
        python.append(repr(value))
      elif token.kind == "op":
        pieces.append(_OPS[token.text])
        python.append(_OPS[token.text])
      elif token.kind == "lp":
        if previous in ("num", "rp"):
          pieces.append("*")
          python.append("*")
        pieces.append("(")
        python.append("(")
      elif token.kind == "rp":
        pieces.append(")")
        python.append(")")
      previous = token.kind
    value = arithmetic.try_evaluate(" ".join(python))
    if value is None:
      return None, 0.0, []
    return _join(pieces), value, deps

  def _reference(self, value: float, used_here: set[int]) -> Optional[_Quantity]:
    for step in reversed(self.steps):
      if _close(step.stated, value) and id(step) not in used_here:
        used_here.add(id(step))
        return step
    candidates = [q for q in self.question_quantities
                  if _close(q.stated, value) and id(q) not in used_here]
    # Several question numbers with this value: the one the sentence talks about.
    candidates.sort(key=lambda q: -len(set(q.base.split("_")) & self.sentence_words))
    for quantity in candidates[:1]:
        used_here.add(id(quantity))
        if quantity not in self.used_question:
          self.used_question.append(quantity)
        return quantity
    for step in reversed(self.steps):  # The same step twice, e.g. `x * x`.
      if _close(step.stated, value):
        return step
    for quantity in self.used_question:
      if _close(quantity.stated, value):
        return quantity
    return None

  def _unique(self, name: str) -> str:
    name = _identifier(name)
    candidate, suffix = name, 2
    while candidate in self.names:
      candidate, suffix = f"{name}_{suffix}", suffix + 1
    self.names.add(candidate)
    return candidate

  # -- output --------------------------------------------------------------

  def program(self, include_docstring: bool) -> Optional[str]:
    answer = self._answer_quantity()
    if answer is None:
      return None
    needed = self._ancestors(answer)
    inputs = [q for q in self.question_quantities
              if q in self.used_question and id(q) in needed]  # In question order.
    steps = [s for s in self.steps if id(s) in needed]
    self._assign_names(inputs, steps)
    names = {id(q): q.name for q in inputs + steps}
    lines = ["def solution():"]
    if include_docstring:
      lines.append(f"    {_docstring(self.question)}")
    for quantity in inputs:
      lines.append(f"    {quantity.name} = {_literal(quantity.value)}")
    pending_comment = ""
    for step in self.steps:
      pending_comment = step.comment or pending_comment
      if id(step) not in needed:
        continue
      if pending_comment:
        lines.append(f"    # {pending_comment}")
        pending_comment = ""
      expression = re.sub("\x01(\\d+)\x01", lambda m: names[int(m.group(1))], step.expression)
      lines.append(f"    {step.name} = {expression}")
    lines.append(f"    result = {answer.name}")
    lines.append("    return result")
    return "\n".join(lines)

  def _assign_names(self, inputs: list[_Quantity], steps: list[_Quantity]) -> None:
    """Unique identifiers for the quantities that appear in the program."""
    for quantity in inputs + steps:
      base = _identifier(quantity.base)
      if base in self.names and quantity.sentence:
        base = next((n for n in map(_identifier, _qualified(base, quantity.sentence))
                     if n not in self.names), base)
      quantity.name = self._unique(base)

  def _answer_quantity(self) -> Optional[_Quantity]:
    for step in reversed(self.steps):
      if _close(step.value, self.gold):
        return step
    return None

  def _ancestors(self, answer: _Quantity) -> set[int]:
    by_id = {id(q): q for q in self.steps + self.used_question}
    needed, stack = set(), [id(answer)]
    while stack:
      key = stack.pop()
      if key in needed:
        continue
      needed.add(key)
      stack.extend(by_id[key].deps if key in by_id else ())
    return needed


# ---------------------------------------------------------------------------
# Helpers.


def _tokenize(text: str) -> list[_Token]:
  tokens = []
  for match in _TOKEN_RE.finditer(text):
    kind = match.lastgroup
    raw = match.group(kind)
    if kind == "num":
      tokens.append(_Token("num", raw, _number_value(raw), raw.endswith("%")))
    elif kind == "word" and raw in ("x", "X"):
      tokens.append(_Token("op", raw))  # `2 x 3`; a variable x makes the equation unusable.
    else:
      tokens.append(_Token(kind, raw))
  return tokens


def _number_value(raw: str) -> Optional[float]:
  text = raw.replace("$", "").replace(",", "").replace("%", "").strip()
  if not text:
    return None
  try:
    return float(text)
  except ValueError:
    return None


def _is_arithmetic(tokens: list[_Token]) -> bool:
  return bool(tokens) and all(t.kind in ("num", "op", "lp", "rp") for t in tokens) and any(
      t.kind == "num" for t in tokens)


def _left_expression(tokens: list[_Token], eq_position: int) -> Optional[list[_Token]]:
  """The arithmetic just before `=`, skipping unit words after numbers."""
  picked: list[_Token] = []
  i = eq_position - 1
  while i >= 0:
    token = tokens[i]
    if token.kind in ("num", "op", "lp", "rp"):
      picked.append(token)
    elif token.kind == "word" or token.kind == "other" and token.text == "/":
      # Unit words (`120 minutes + 10 minutes =`) are skipped only right
      # after a number (at most two of them).
      j = i - 1
      while j >= 0 and tokens[j].kind == "word" and i - j < 2:
        j -= 1
      if j >= 0 and tokens[j].kind == "num":
        i = j
        continue
      break
    else:
      break
    i -= 1
  picked.reverse()
  for i in range(len(picked) - 1, 0, -1):  # `100 because 40/.4 =`: two numbers, no operator.
    if picked[i - 1].kind == "num" and picked[i].kind == "num":
      picked = picked[i:]
      break
  while picked and picked[0].kind in ("op", "rp"):
    if picked[0].kind == "op" and picked[0].text in "-−–" and len(picked) > 1:
      break
    picked.pop(0)
  depth = 0
  for token in picked:
    depth += token.kind == "lp"
    depth -= token.kind == "rp"
    if depth < 0:
      return None
  while depth > 0 and picked and picked[0].kind == "lp":
    picked.pop(0)
    depth -= 1
  if depth != 0 or sum(t.kind == "num" for t in picked) < 2 or not any(t.kind == "op" for t in picked):
    return None
  if picked[-1].kind == "op":
    return None
  return picked


def _reconcile(rendered: str, value: float, stated: float) -> tuple[Optional[str], float]:
  """Reproduces the rationale's rounding of a step's value."""
  if _close(value, stated):
    return rendered, value
  for digits in range(0, 4):
    if _close(round(value, digits), stated):
      if digits == 0:
        return f"round({rendered})", float(round(value))
      return f"round({rendered}, {digits})", round(value, digits)
  if _close(math.floor(value), stated):
    return f"int({rendered})", float(math.floor(value))
  return None, value  # The rationale's arithmetic is wrong here: no step.


def _close(a: float, b: float) -> bool:
  return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def _join(pieces: list[str]) -> str:
  out = []
  for i, piece in enumerate(pieces):
    if piece in ("+", "-", "*", "/", "**"):
      unary = i == 0 or pieces[i - 1] in ("(", "+", "-", "*", "/", "**")
      out.append(piece if unary and piece == "-" else f" {piece} ")
    else:
      out.append(piece)
  return "".join(out).replace("( ", "(").replace(" )", ")").strip()


def _literal(value: float) -> str:
  if float(value).is_integer() and abs(value) < 1e15:
    return str(int(value))
  return repr(float(value))


def _content_words(text: str, from_start: bool) -> list[str]:
  """Up to three naming words next to a number (after it, or before it)."""
  text = re.sub(r"['’]s\b", "", text[:80] if from_start else text[-80:])
  words = re.findall(r"[A-Za-z]+|[.,;:?!]", text)
  if not from_start:
    words = words[::-1]
  picked = []
  for word in words:
    if not word[0].isalpha():
      break
    lower = word.lower()
    if from_start and lower in _CONNECTORS and (picked or lower == "per"):
      picked.append(lower)
      continue
    if picked and picked[-1] in _CONNECTORS and lower in _DETERMINERS:
      continue  # `seashells to his friends` -> seashells_to_friends.
    if lower in _STOP or lower in _WORD_NUMBERS:
      if picked:
        break
      continue
    picked.append(lower)
    if len(picked) >= _MAX_NAME_WORDS:
      break
  picked = picked[:_MAX_NAME_WORDS]
  while picked and picked[-1] in _CONNECTORS:
    picked.pop()
  if not from_start:
    picked.reverse()
  return picked


def _words_after(tokens: list[_Token], start: int) -> list[str]:
  words = []
  for token in tokens[start:start + 6]:
    if token.kind != "word":
      if token.kind == "other" and token.text in "$%":
        continue
      break
    words.append(token.text)
  return _content_words(" ".join(words), from_start=True)


def _step_name(tokens: list[_Token], after: int, index: int, stated: float,
               anchor: Optional[int] = None) -> str:
  """Names a step by the words after its result (`24 clips in May`).

  Falls back to the words after an earlier mention of the same number
  (`There are 120 students because 8 x 15 = 120`), then to the words before
  the equation.
  """
  name_words = _words_after(tokens, after)
  if not name_words:
    for i, token in enumerate(tokens[:after]):
      if token.kind == "num" and _close(token.value, stated):
        name_words = _words_after(tokens, i + 1)
        if name_words:
          break
  if not name_words:
    before = []
    for token in tokens[:after]:
      if token.kind == "word":
        before.append(token.text)
      elif token.kind in ("num", "mark", "eq"):
        break
    name_words = _content_words(" ".join(before), from_start=False)
  if not name_words and anchor is not None:
    # `... the number of pink hard hats that remained is 26-4 = 22`.
    i = anchor - 1
    while i >= 0 and (tokens[i].kind in ("num", "op", "lp", "rp", "eq", "mark") or
                      tokens[i].kind == "other" and tokens[i].text == "$"):
      i -= 1
    words = []
    while i >= 0 and tokens[i].kind == "word":
      words.insert(0, tokens[i].text)
      i -= 1
    name_words = _content_words(" ".join(words), from_start=False)
  return "_".join(name_words) if name_words else f"step_{index + 1}"


_TOTAL_RE = re.compile(r"\b(total|altogether|combined|in all|together|sum)\b", re.I)
_LEFT_RE = re.compile(r"\b(left|remain|remaining|remains)\b", re.I)


def _qualified(name: str, sentence: str) -> list[str]:
  """Alternative names for `name` when it is taken, from the sentence's words."""
  options = []
  if _TOTAL_RE.search(sentence) and not name.startswith("total"):
    options.append(f"total_{name}")
  if _LEFT_RE.search(sentence) and not name.endswith("left"):
    options.append(f"{name}_left")
  return options


def _identifier(name: str) -> str:
  name = re.sub(r"[^a-z0-9_]", "", name.lower().replace("’", "").replace("'", ""))
  name = re.sub(r"_+", "_", name).strip("_") or "value"
  if name[0].isdigit():
    name = f"n_{name}"
  if name in _RESERVED:
    name = f"{name}_value"
  return name


def _docstring(question: str) -> str:
  text = question.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
  if text.endswith('"'):
    text = text[:-1] + '\\"'
  return f'"""{text}"""'
