"""The refinement input: question + faulty program + feedback, within a token budget.

  Question: <question>
  Program:
  <faulty program>
  Feedback: <feedback>

The student reads this text as `<s> text </s>` (`pad_jax.student.vocab.format_input`)
and writes the corrected program; a decoder-only student reads BOS +
`tasks.decoder_tasks.prompt_text(text)` (text + newline, no EOS) in training
(`tasks.refine_tasks`, `decoder_only=True`) and at inference alike, which
the same budget bounds (the newline and BOS in place of `<s>` and `</s>`). The whole input, with `<s>` and `</s>`,
fits `max_input_tokens` (512 for CodeT5, the paper's input length). When it
would not, pieces are cut in this order, each at a token boundary:

1. the feedback to its first `FEEDBACK_TOKENS` (64) tokens (the exception
   type and line come first, so they survive) followed by ` ...`;
2. the question to its first `QUESTION_TOKENS` (192) tokens + ` ...`;
3. the program from the end, whole lines at a time, a last line `    ...`
   marking the cut (the head, where the definitions are, stays);
4. if still too long (a single enormous line), the text's tokens are cut at
   the budget (never reached by GSM8K-sized inputs).

Token counts use the student's vocabulary (`vocab.encode`), so the budget
holds for the tokens the model sees.
"""

from __future__ import annotations

from typing import Any

from pad_jax import jsonl
from pad_jax.errors import DataError

# The fields of a refinement row (`refine.jsonl`, written by `pad_jax.refine`).
FIELDS = ("id", "question_id", "question", "program", "feedback", "target", "answer")
MAX_INPUT_TOKENS = 512
FEEDBACK_TOKENS = 64
QUESTION_TOKENS = 192
_ELLIPSIS = " ..."
_SPECIALS = 2  # <s> and </s>.


def render(question: str, program: str, feedback: str) -> str:
  """The refinement input text, untruncated."""
  return f"Question: {question}\nProgram:\n{program}\nFeedback: {feedback}"


def _head(text: str, limit: int, vocabulary: Any) -> str:
  ids = vocabulary.encode(text)
  if len(ids) <= limit:
    return text
  return vocabulary.decode(ids[:limit]).rstrip() + _ELLIPSIS


def input_tokens(text: str, vocabulary: Any) -> int:
  """Tokens of `text` as the model's input (with `<s>` and `</s>`)."""
  return len(vocabulary.encode(text)) + _SPECIALS


def refinement_input(question: str, program: str, feedback: str, vocabulary: Any,
                     max_input_tokens: int = MAX_INPUT_TOKENS) -> str:
  """The refinement input for the student, within `max_input_tokens`.

  Args:
    question: the problem.
    program: the faulty program.
    feedback: the interpreter's feedback (`pad_jax.execution.feedback`).
    vocabulary: the student's vocabulary (anything with encode/decode).
    max_input_tokens: the student's input length, `<s>` and `</s>` included.

  Returns:
    The text (see the module docstring for what is cut, in which order).
  """
  text = render(question, program, feedback)
  if input_tokens(text, vocabulary) <= max_input_tokens:
    return text
  feedback = _head(" ".join(feedback.split()), FEEDBACK_TOKENS, vocabulary)
  question = _head(question, QUESTION_TOKENS, vocabulary)
  lines = program.split("\n")
  text = render(question, program, feedback)
  while input_tokens(text, vocabulary) > max_input_tokens and len(lines) > 1:
    lines = lines[:-1]
    text = render(question, "\n".join(lines + ["    ..."]), feedback)
  if input_tokens(text, vocabulary) > max_input_tokens:
    ids = vocabulary.encode(text)[:max_input_tokens - _SPECIALS]
    text = vocabulary.decode(ids)
    while input_tokens(text, vocabulary) > max_input_tokens:  # Re-encoding may merge differently.
      ids = ids[:-1]
      text = vocabulary.decode(ids)
  return text


def read_rows(path: Any) -> list[dict[str, Any]]:
  """Reads and validates a refinement file (DataError naming file:line:field)."""
  rows = []
  for number, row in jsonl.iter_rows(path):
    for field in FIELDS:
      if field not in row:
        raise DataError(path, number, field, "missing field (is this a refine.jsonl?)")
    for field in ("id", "question_id", "question", "program", "feedback", "target"):
      jsonl.get_text(row, field, path, number)
    jsonl.get_number(row, "answer", path, number)
    rows.append(row)
  return rows

