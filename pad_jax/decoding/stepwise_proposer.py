"""K candidate next lines per partial program, decoded from a kept cache.

A `Session` holds one batch of questions on the device: each question is
encoded once, and the decoder's self-attention cache is kept between the
search's steps (`stepwise_decoder.LineDecoder`). Each call decodes one
line for every row (question x beam x candidate) in one jitted loop, the
rows continuing their parent's cache row; the search passes, per row, the
row its beam was decoded in (`Session.propose`'s `parents`).

The stop at the end of a line is a custom stop, not a cut in text: a row
ends as soon as it has *generated* a newline id (any id whose text contains
a newline; a byte-level BPE has several, e.g. "\\n" and "\\n   "), so each
row decodes only its own line, and the candidate's ids are exactly what the
model wrote. Each row has its own temperature: the first candidate of every
beam is the argmax line, the other K - 1 are samples (`temperature`,
`top_k`). With K = 1 every step is the greedy line, and one beam writes
greedy decoding's ids. Scores are the model's own log-probabilities of the
new ids at temperature 1 (t5x's `rescale_log_probs=False`).

`Proposer.propose` is the stateless form (each row its own question,
nothing cached: the prefix is fed again), for callers that complete
arbitrary prefixes (`pad_jax.stepwise.verifier_data`).

Either student family: an encoder-decoder student reads each question's
ids (`Decoder.encode`) in its encoder; a decoder-only student reads them
(its prompt) as the first ids of each of the question's rows, before the
program (`LineDecoder.prompted`; `stepwise_decoder_only`). Prefixes,
proposals and `max_decode_length` count program ids only, either way.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any, Optional, Sequence

import jax
import numpy as np

from pad_jax.decoding import stepwise_decoder

EOS, NEWLINE, LENGTH = "eos", "newline", "length"
_ENDS = {stepwise_decoder.END_EOS: EOS, stepwise_decoder.END_NEWLINE: NEWLINE,
         stepwise_decoder.END_LENGTH: LENGTH}


@dataclasses.dataclass(frozen=True)
class Proposal:
  """One candidate continuation of a prefix.

  Attributes:
    tokens: the new ids (the line, ending with its newline id, or EOS).
    logprob: their summed log-probability under the model.
    end: how the line ended: `newline`, `eos`, or `length` (no end within
      the step or program budget).
  """
  tokens: tuple[int, ...]
  logprob: float
  end: str


def bucket(length: int, limit: int, smallest: int = 32) -> int:
  """Powers of two (>= `smallest`), capped at `limit`: few compilations."""
  size = smallest
  while size < length:
    size *= 2
  return min(size, limit)


@functools.lru_cache(maxsize=4)
def newline_ids(vocabulary: Any) -> np.ndarray:
  """A boolean mask over the vocabulary: ids whose text has a newline."""
  mask = np.zeros(vocabulary.vocab_size, bool)
  for i in range(vocabulary.vocab_size):
    try:
      mask[i] = "\n" in vocabulary.decode([i])
    except Exception:  # pylint: disable=broad-except  # special/extra ids
      pass
  return mask


class Proposer:
  """Decodes the next line of many partial programs at once.

  Args:
    model: a `pad_jax.student.models.EncoderDecoderModel` (over pad-jax's
      network or t5x's) or a t5x `DecoderOnlyModel`.
    params: its parameters.
    vocabulary: its output vocabulary.
    max_step_length: the most ids of one line.
    max_decode_length: the most ids of a whole program.
    temperature, top_k: how candidates 2..K are sampled.
    seed: the sampling seed.
  """

  def __init__(self, model: Any, params: Any, vocabulary: Any, *,
               max_step_length: int = 64, max_decode_length: int = 256,
               temperature: float = 1.0, top_k: int = 0, seed: int = 0):
    self.vocabulary = vocabulary
    self.max_step_length = max_step_length
    self.max_decode_length = max_decode_length
    self.temperature = temperature
    self.decoder = stepwise_decoder.LineDecoder(
        model, params, newline_ids(vocabulary), eos_id=vocabulary.eos_id,
        max_decode_length=max_decode_length, top_k=top_k)
    self._rng = jax.random.PRNGKey(seed)
    self._calls = 0

  def session(self, encoded: Sequence[Sequence[int]],
              rows_per_question: int) -> "Session":
    """Questions (`Decoder.encode`'s ids), up to that many rows each."""
    return Session(self, encoded, rows_per_question)

  def propose(self, encoded: Sequence[Sequence[int]],
              prefixes: Sequence[Sequence[int]],
              argmax: Sequence[bool], line: bool = True) -> list[Proposal]:
    """The next line (or, `line=False`, the rest of the program) of each row.

    Stateless: each row is its own question and its prefix is fed again.

    Args:
      encoded: each row's question ids (`Decoder.encode`: `<s> question
        </s>`, or a decoder-only student's prompt).
      prefixes: each row's partial program ids (no decoder start token).
      argmax: each row's candidate is the argmax line (else sampled).
      line: stop at the end of the line; else at EOS.

    Returns:
      One `Proposal` per row.
    """
    proposals, _ = self.session(encoded, 1).propose(
        range(len(prefixes)), [None] * len(prefixes), prefixes, argmax, line)
    return proposals

  def reset_rng(self) -> None:
    """Samples again from the seed (the same candidates for the same calls)."""
    self._calls = 0

  def next_rng(self) -> jax.Array:
    """The sampling key of the next call (folded from the seed)."""
    self._calls += 1
    return jax.random.fold_in(self._rng, self._calls - 1)


class Session:
  """One batch of questions encoded once, its decoder cache kept across calls.

  Rows are laid out `question group x rows` (a static batch: the groups
  and the rows per group are powers of two, the rows at most
  `rows_per_question`; padding rows are decoded but never waited for).
  When the questions still searched fit half the groups, or a call needs
  other rows per question, the layout is rebuilt (the encoder runs again)
  and the cache rows are gathered into it.

  A decoder-only student's rows start with their question's prompt (the
  encoded ids): the cache is `prompt room + max_decode_length` long.
  """

  def __init__(self, proposer: Proposer, encoded: Sequence[Sequence[int]],
               rows_per_question: int):
    self.proposer, self.slots = proposer, rows_per_question
    self.encoded = [list(e) for e in encoded]
    self._input_length = bucket(max(len(e) for e in self.encoded), 1 << 30,
                                smallest=8)
    # Ids before each question's program in its decoder rows.
    self._prompts = (self.encoded if proposer.decoder.prompted
                     else [[] for _ in self.encoded])
    self._length = proposer.decoder.sequence_length(self._input_length)
    self._questions: tuple[int, ...] = ()  # question of each row group
    self._rows = 0  # rows per question group
    self._context: Any = None
    self._cache: Any = None
    self._row_ids: list[tuple[int, ...]] = []  # ids each cache row holds

  def _layout(self, live: Sequence[int], rows_per_question: int) -> None:
    """Question groups for `live`, `rows_per_question` rows each.

    Kept while it fits (the same question groups, the same rows each);
    rebuilt, with the encoder run again, when the questions shrink to a
    smaller power of two or the rows per question change (the first step
    has one beam, K rows, of the B x K).
    """
    size = bucket(len(live), 1 << 30, smallest=1)
    if (self._questions and set(live) <= set(self._questions) and
        size == len(self._questions) and rows_per_question == self._rows):
      return
    self._questions = tuple(live) + (live[0],) * (size - len(live))
    self._rows = rows_per_question
    inputs = np.zeros((size, self._input_length), np.int32)
    for i, q in enumerate(self._questions):
      inputs[i, :len(self.encoded[q])] = self.encoded[q]
    decoder = self.proposer.decoder
    self._context = decoder.context(inputs, rows_per_question)
    if self._cache is None:
      self._cache = decoder.empty_cache(size * rows_per_question,
                                        self._input_length)

  def propose(self, questions: Sequence[int], parents: Sequence[Optional[int]],
              prefixes: Sequence[Sequence[int]], argmax: Sequence[bool],
              line: bool = True) -> tuple[list[Proposal], list[int]]:
    """The next line of each row, each continuing its parent's cache row.

    Args:
      questions: each row's question (an index into the session's).
      parents: the cache row its prefix was decoded in (`propose`'s second
        result of an earlier call), or None (nothing cached).
      prefixes: each row's partial program ids.
      argmax: each row's candidate is the argmax line (else sampled).
      line: stop at the end of the line; else at EOS.

    Returns:
      (one `Proposal` per row, the cache row each was decoded in).
    """
    p = self.proposer
    length = self._length
    counts = collections.Counter(questions)
    if max(counts.values()) > self.slots:
      raise ValueError(f"more than {self.slots} rows for one question")
    self._layout(list(counts), min(self.slots, bucket(
        max(counts.values()), 1 << 30, smallest=1)))
    group = {q: i for i, q in reversed(list(enumerate(self._questions)))}
    rows = len(self._questions) * self._rows
    used = [0] * len(self._questions)
    cache_rows = []
    parent_rows = np.zeros(rows, np.int32)
    tokens = np.zeros((rows, length + 1), np.int32)
    lengths = np.zeros(rows, np.int32)
    valid = np.zeros(rows, np.int32)
    alive = np.zeros(rows, bool)
    temperatures = np.full(rows, p.temperature, np.float32)
    for q, parent, prefix, top in zip(questions, parents, prefixes, argmax):
      g = group[q]
      r = g * self._rows + used[g]
      used[g] += 1
      cache_rows.append(r)
      prefix = self._prompts[q] + list(prefix)
      tokens[r, 1:len(prefix) + 1] = prefix
      lengths[r], alive[r] = len(prefix), True
      temperatures[r] = 0.0 if top else p.temperature
      if parent is not None:
        parent_rows[r] = parent
        valid[r] = self._valid(self._row_ids[parent], prefix)
    out, self._cache = p.decoder.decode(
        self._context, self._cache, parent_rows, tokens, lengths, valid,
        alive, temperatures, p.next_rng(), line=line,
        budget=p.max_step_length if line else length)
    self._row_ids = [tuple(out.tokens[r, 1:lengths[r] + out.new[r] + 1])
                     for r in range(rows)]
    proposals = [self._proposal(out, r, lengths[r], len(self._prompts[q]))
                 for q, r in zip(questions, cache_rows)]
    return proposals, cache_rows

  @staticmethod
  def _valid(held: Sequence[int], prefix: Sequence[int]) -> int:
    """Cache positions of a row holding `held` that are right for `prefix`.

    Position k holds the id fed there (0: the start id, k: id k - 1); the
    row fed all of `held` but its last id. The first id of `prefix` that
    differs from `held` (a caller may change a line) and everything after
    it is fed again, and so is `prefix`'s last id (its logits are needed).
    """
    common = 0
    for a, b in zip(held, prefix):
      if a != b:
        break
      common += 1
    return min(common + 1, len(held), len(prefix))

  def _proposal(self, out: stepwise_decoder.LineBatch, r: int,
                prefix_length: int, prompt_length: int) -> Proposal:
    """Row `r`'s new ids; `prefix_length` counts its prompt's ids too."""
    new = int(out.new[r])
    end = _ENDS[int(out.end[r])]
    program = prefix_length - prompt_length
    # A decoder-only row's room depends on its prompt: it may have gone
    # past the program's limit, where an encoder-decoder row's cache ends.
    room = self.proposer.max_decode_length - program
    if new > room:
      new, end = room, LENGTH
    ids = tuple(int(t) for t in
                out.tokens[r, prefix_length + 1:prefix_length + 1 + new])
    # An unfinished program at the decode limit has no room for another
    # line: it ends at LENGTH.
    limit = self.proposer.max_decode_length - 1
    if end != EOS and program + new >= limit:
      end = LENGTH
    return Proposal(ids, float(out.logprob[r]), end)
