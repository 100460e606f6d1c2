"""Shared checks of the step-wise line decoder on tiny random-weight models.

`tests/stepwise_decoder_test.py` (encoder-decoder, pad-jax's and t5x's
networks) and `tests/stepwise_decoder_only_test.py` (decoder-only) run the
same two checks over their own model:

* `check_chained_lines_are_greedy`: chaining argmax lines, each continuing
  from its parent's cache row, gives exactly the model's greedy ids;
* `check_continuing_equals_fresh`: a row continuing its parent's cache row
  decodes what a fresh decode of the same prefix decodes.

`prefixes_run` (for the search tests on trained students,
`tests/stepwise_search_test.py`, `tests/decoder_only_decode_test.py`): every
line prefix of a program passes the sandbox.

Random weights write no structure, so each test's `Vocabulary` calls a few
of the ids greedy writes "newlines" (`newline_ids_of`), which gives its
programs lines of mixed length.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytest

from pad_jax.decoding import stepwise_proposer as proposer_lib
from pad_jax.decoding import stepwise_steps as steps

EOS = 1


class Vocabulary:
  """Just what the proposer reads: size, EOS and which ids hold a newline."""

  def __init__(self, vocab_size: int, newline: set[int]):
    self.vocab_size, self.eos_id, self._newline = vocab_size, EOS, newline

  def decode(self, ids):
    return "\n" if ids[0] in self._newline else "x"


def newline_ids_of(greedy: np.ndarray) -> set[int]:
  """The ids greedy writes at positions 3 and 10 of every row (not EOS or 0)."""
  newline = {int(greedy[r, p]) for r in range(len(greedy)) for p in (3, 10)}
  return newline - {EOS, 0}


def until_eos(ids) -> list[int]:
  ids = [int(t) for t in ids]
  return ids[:ids.index(EOS) + 1] if EOS in ids else ids


def check_chained_lines_are_greedy(proposer: proposer_lib.Proposer,
                                   inputs: Sequence[Sequence[int]],
                                   greedy: np.ndarray, length: int) -> None:
  """Eight argmax copies of each input's row (64 rows for 8 inputs: the last
  rows of a line finish alone, `stepwise_decoder.STRAGGLER_FRACTION`); the
  first copy's cache row is the next line's parent. `length`: the program
  limit (`max_decode_length`)."""
  copies = 8
  session = proposer.session(inputs, copies)
  programs = {q: () for q in range(len(inputs))}
  rows = {q: None for q in range(len(inputs))}
  lines = {q: 0 for q in range(len(inputs))}
  for _ in range(length):
    if not programs:
      break
    order = [q for q in sorted(programs) for _ in range(copies)]
    proposals, cache_rows = session.propose(
        order, [rows[q] for q in order], [programs[q] for q in order],
        [True] * len(order))
    for q, proposal, row in list(zip(order, proposals, cache_rows))[::copies]:
      programs[q] += proposal.tokens
      rows[q] = row
      lines[q] += 1
      if proposal.end != proposer_lib.NEWLINE:
        expected = until_eos(greedy[q])
        assert list(programs[q]) == expected[:len(programs[q])], q
        # The LENGTH rule stops one id short of the program limit.
        assert len(programs[q]) >= min(len(expected), length - 1)
        assert len(programs[q]) <= length
        del programs[q]
  assert not programs
  assert max(lines.values()) >= 3  # several lines, of different lengths


def check_continuing_equals_fresh(proposer: proposer_lib.Proposer,
                                  inputs: Sequence[Sequence[int]]) -> None:
  """12 candidates per input for 3 inputs (the argmax line and samples),
  then 8 continuations of two parents of different lengths per input, from
  the kept cache rows and afresh."""
  session = proposer.session(inputs[:3], 16)
  questions = [q for q in range(3) for _ in range(12)]
  first, rows = session.propose(questions, [None] * 36, [()] * 36,
                                [k == 0 for _ in range(3) for k in range(12)])
  by_length = {}
  for i, proposal in enumerate(first):  # parents of different lengths
    by_length.setdefault((questions[i], len(proposal.tokens)), i)
  keep = []
  for q in range(3):  # two parents per question at most: 16 rows
    keep += sorted(i for (p, _), i in by_length.items() if p == q)[:2]
  assert len({len(first[i].tokens) for i in keep}) >= 2
  questions = [questions[i] for i in keep for _ in range(8)]
  parents = [rows[i] for i in keep for _ in range(8)]
  prefixes = [first[i].tokens for i in keep for _ in range(8)]
  second, _ = session.propose(questions, parents, prefixes,
                              [True] * len(questions))
  fresh = proposer.propose([inputs[q] for q in questions], prefixes,
                           [True] * len(questions))
  for a, b in zip(second, fresh):
    assert a.tokens == b.tokens and a.end == b.end
    assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


def prefixes_run(tokens, vocabulary, executor) -> bool:
  """Whether every line prefix of a program's ids passes the sandbox."""
  newline = proposer_lib.newline_ids(vocabulary)
  ids = [t for t in tokens if t != vocabulary.eos_id]
  checks = [steps.runnable(vocabulary.decode(ids[:i + 1]))
            for i, t in enumerate(ids) if newline[t]]
  if any(c.kind == steps.SYNTAX_ERROR for c in checks):
    return False
  results = executor.run([c.program for c in checks])
  return all(r.ok for c, r in zip(checks, results) if c.kind == steps.RUN)
