"""Reasoning scorers: rank the partial programs that survived execution.

* `LogProbScorer` (default): the student's own length-normalized
  log-probability of the whole partial program, `sum log p(id) / #ids`
  (summed step by step by the proposer; the same value t5x `score_batch`
  gives the ids).
* `VerifierScorer`: a trained step verifier (a t5x `EncoderDecoderModel`,
  `runs/step_verifier.gin`) reads `verifier_input(question, prefix)` and the
  score is `log p("correct") - logsumexp(log p("correct"), log p("wrong"))`
  from t5x `score_batch` of the two label sequences (each with its EOS): the
  log-probability of "correct" among the two labels, in (-inf, 0].
* `CombinedScorer`: both, weighted by w (`--step_verifier_weight`):
  `score = (1 - w) * logprob / #ids + w * verifier log p("correct")`, two
  log-probabilities (<= 0) mixed linearly; w = 0 is `LogProbScorer`, w = 1
  `VerifierScorer`, each exactly (the other is not computed).
* `GroundedScorer` (`--step_grounding`): any of them, with a step that
  states a given the question does not contain
  (`execution.feedback.grounding_feedback`: `bought = 168` for "buys 61
  more") ranked below every step that does not: its score minus
  `UNGROUNDED_PENALTY`. Not pruned: when every candidate is ungrounded (a
  constant the question implies, `minutes_per_hour = 60`) the search goes on
  with them, in their own order.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Protocol, Sequence

import jax
import numpy as np

from pad_jax.execution import feedback as feedback_lib
from pad_jax.student import vocab as vocab_lib
from pad_jax.decoding import stepwise_proposer as proposer_lib
from tasks import verifier_tasks


@dataclasses.dataclass(frozen=True)
class Candidate:
  """A partial program to score.

  Attributes:
    question: the question text.
    text: the partial program as text.
    num_tokens: its length in student ids.
    logprob: its summed log-probability under the student.
  """
  question: str
  text: str
  num_tokens: int
  logprob: float


class Scorer(Protocol):
  name: str

  def score(self, candidates: Sequence[Candidate]) -> list[float]:
    """Higher is better."""


class LogProbScorer:
  """The student's length-normalized log-probability."""

  name = "logprob"

  def score(self, candidates: Sequence[Candidate]) -> list[float]:
    return [c.logprob / max(1, c.num_tokens) for c in candidates]


class VerifierScorer:
  """A trained step verifier's probability that the prefix is on track.

  Args:
    model: the verifier's t5x `EncoderDecoderModel`.
    params: its parameters.
    vocabulary: its vocabulary.
    encode: `text -> <s> text </s>` ids, truncated (keeps the question and
      the last lines when the input is too long: left-truncation of the
      program would drop the question, so the middle is cut).
    max_input_length: the verifier's input budget.
  """

  name = "verifier"

  def __init__(self, model: Any, params: Any, vocabulary: Any,
               max_input_length: int = 512):
    self.model, self.params, self.vocabulary = model, params, vocabulary
    self.max_input_length = max_input_length
    self._labels = [list(vocabulary.encode(l)) + [vocabulary.eos_id]
                    for l in verifier_tasks.LABELS]
    self._score = jax.jit(model.score_batch)

  def _encode(self, text: str) -> list[int]:
    ids = [vocab_lib.BOS_ID] + list(self.vocabulary.encode(text)) + [self.vocabulary.eos_id]
    limit = self.max_input_length
    if len(ids) > limit:  # keep the start (question) and the end (new line)
      head = limit // 2
      ids = ids[:head] + ids[len(ids) - (limit - head):]
    return ids

  def score(self, candidates: Sequence[Candidate]) -> list[float]:
    if not candidates:
      return []
    inputs = [self._encode(verifier_tasks.verifier_input(c.question, c.text))
              for c in candidates]
    rows = len(inputs) * len(self._labels)
    size = proposer_lib.bucket(rows, 1 << 30, smallest=8)
    enc_length = proposer_lib.bucket(max(len(i) for i in inputs), 1 << 30)
    dec_length = max(len(l) for l in self._labels)
    batch = {k: np.zeros((size, n), np.int32) for k, n in (
        ("encoder_input_tokens", enc_length),
        ("decoder_input_tokens", dec_length),
        ("decoder_target_tokens", dec_length))}
    batch["decoder_loss_weights"] = np.zeros((size, dec_length), np.float32)
    for i, ids in enumerate(inputs):
      for j, label in enumerate(self._labels):
        row = i * len(self._labels) + j
        batch["encoder_input_tokens"][row, :len(ids)] = ids
        batch["decoder_target_tokens"][row, :len(label)] = label
        batch["decoder_input_tokens"][row, 1:len(label)] = label[:-1]
        batch["decoder_loss_weights"][row, :len(label)] = 1.0
    scores = np.asarray(self._score(self.params, batch))[:rows]
    scores = scores.reshape(len(inputs), len(self._labels))
    correct = scores[:, verifier_tasks.LABELS.index(verifier_tasks.CORRECT)]
    return [float(s) for s in correct - np.logaddexp.reduce(scores, axis=1)]


class CombinedScorer:
  """`(1 - w) * generation + w * verifier` (two log-probabilities, <= 0).

  Args:
    verifier: the step verifier's scorer (`VerifierScorer`).
    weight: w in [0, 1]; 0 ranks by `generation` alone, 1 by `verifier`
      alone (the other scorer is then not called).
    generation: the student's scorer (default `LogProbScorer`).
  """

  name = "combined"

  def __init__(self, verifier: Scorer, weight: float,
               generation: Optional[Scorer] = None):
    if not 0 <= weight <= 1:
      raise ValueError(f"weight must be in [0, 1], got {weight!r}")
    self.verifier, self.weight = verifier, float(weight)
    self.generation = generation or LogProbScorer()

  def score(self, candidates: Sequence[Candidate]) -> list[float]:
    w = self.weight
    if w == 0:
      return self.generation.score(candidates)
    if w == 1:
      return self.verifier.score(candidates)
    return [(1 - w) * g + w * v for g, v in zip(self.generation.score(candidates),
                                                 self.verifier.score(candidates))]


# Below any log-probability score a step can have (they are >= -1e3 per id).
UNGROUNDED_PENALTY = 1e4


class GroundedScorer:
  """`scorer`'s score, minus `UNGROUNDED_PENALTY` for a prefix with an ungrounded given."""

  def __init__(self, scorer: Scorer):
    self.scorer = scorer
    self.name = f"{scorer.name}+grounding"

  def score(self, candidates: Sequence[Candidate]) -> list[float]:
    return [score - UNGROUNDED_PENALTY * (feedback_lib.grounding_feedback(c.question, c.text)
                                          is not None)
            for c, score in zip(candidates, self.scorer.score(candidates))]
