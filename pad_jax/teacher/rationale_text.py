"""Reading GSM8K rationale text, for the gold teacher (`pad_jax.teacher.gold`).

The text side of turning a rationale into a program: tokens (calculator marks,
numbers written `$1,200.50` or `25%` or `.5`, ASCII and typographic operators,
words), the arithmetic to the left of an `=`, and names for quantities taken
from the words around a number (`24 clips in May` -> `clips_in_may`), made
into valid, unreserved Python identifiers. Standard library only.
"""

from __future__ import annotations

import builtins
import dataclasses
import keyword
import re
from typing import Optional

MARK_RE = re.compile(r"<<([^<>]*)>>")
WORD_NUMBERS = {
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
OPS = {"+": "+", "-": "-", "−": "-", "–": "-", "*": "*", "×": "*", "⋅": "*", "·": "*",
        "x": "*", "X": "*", "/": "/", "÷": "/", "^": "**"}
STOP = frozenset("""a an the of her his their its our my your each every per than as
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
class Token:
  """One token: `kind` is a group name of `_TOKEN_RE` (num, op, word, ...)."""
  kind: str
  text: str
  value: Optional[float] = None
  percent: bool = False


def tokenize(text: str) -> list[Token]:
  """The tokens of `text` (calculator marks pre-encoded as NUL-delimited indices)."""
  tokens = []
  for match in _TOKEN_RE.finditer(text):
    kind = match.lastgroup
    raw = match.group(kind)
    if kind == "num":
      tokens.append(Token("num", raw, number_value(raw), raw.endswith("%")))
    elif kind == "word" and raw in ("x", "X"):
      tokens.append(Token("op", raw))  # `2 x 3`; a variable x makes the equation unusable.
    else:
      tokens.append(Token(kind, raw))
  return tokens


def number_value(raw: str) -> Optional[float]:
  """`$1,200.50` -> 1200.5, `25%` -> 25.0; None if it is not a number."""
  text = raw.replace("$", "").replace(",", "").replace("%", "").strip()
  if not text:
    return None
  try:
    return float(text)
  except ValueError:
    return None


def is_arithmetic(tokens: list[Token]) -> bool:
  """Whether `tokens` are only numbers, operators and parentheses (and a number)."""
  return bool(tokens) and all(t.kind in ("num", "op", "lp", "rp") for t in tokens) and any(
      t.kind == "num" for t in tokens)


def left_expression(tokens: list[Token], eq_position: int) -> Optional[list[Token]]:
  """The arithmetic just before `=`, skipping unit words after numbers."""
  picked: list[Token] = []
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


def close(a: float, b: float) -> bool:
  """Whether `a` equals `b` up to a relative 1e-6."""
  return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def content_words(text: str, from_start: bool) -> list[str]:
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
    if lower in STOP or lower in WORD_NUMBERS:
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


def _words_after(tokens: list[Token], start: int) -> list[str]:
  words = []
  for token in tokens[start:start + 6]:
    if token.kind != "word":
      if token.kind == "other" and token.text in "$%":
        continue
      break
    words.append(token.text)
  return content_words(" ".join(words), from_start=True)


def step_name(tokens: list[Token], after: int, index: int, stated: float,
               anchor: Optional[int] = None) -> str:
  """Names a step by the words after its result (`24 clips in May`).

  Falls back to the words after an earlier mention of the same number
  (`There are 120 students because 8 x 15 = 120`), then to the words before
  the equation.
  """
  name_words = _words_after(tokens, after)
  if not name_words:
    for i, token in enumerate(tokens[:after]):
      if token.kind == "num" and close(token.value, stated):
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
    name_words = content_words(" ".join(before), from_start=False)
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
    name_words = content_words(" ".join(words), from_start=False)
  return "_".join(name_words) if name_words else f"step_{index + 1}"


_TOTAL_RE = re.compile(r"\b(total|altogether|combined|in all|together|sum)\b", re.I)
_LEFT_RE = re.compile(r"\b(left|remain|remaining|remains)\b", re.I)


def qualified(name: str, sentence: str) -> list[str]:
  """Alternative names for `name` when it is taken, from the sentence's words."""
  options = []
  if _TOTAL_RE.search(sentence) and not name.startswith("total"):
    options.append(f"total_{name}")
  if _LEFT_RE.search(sentence) and not name.endswith("left"):
    options.append(f"{name}_left")
  return options


def identifier(name: str) -> str:
  """`name` as a valid Python identifier that shadows no keyword or builtin."""
  name = re.sub(r"[^a-z0-9_]", "", name.lower().replace("’", "").replace("'", ""))
  name = re.sub(r"_+", "_", name).strip("_") or "value"
  if name[0].isdigit():
    name = f"n_{name}"
  if name in _RESERVED:
    name = f"{name}_value"
  return name
