"""pad_jax.decoding.stepwise_scorers: the combined scorer (no model), and its weight setting."""

import dataclasses
import math

import pytest

from pad_jax.decoding import stepwise_scorers as scorers
from pad_jax.decoding.settings import DecodeSettings
from pad_jax.errors import ConfigError


class _FixedVerifier:
  """A stand-in verifier: log p("correct") per partial program text."""

  name = "verifier"

  def __init__(self, scores):
    self.scores, self.calls = scores, 0

  def score(self, candidates):
    self.calls += 1
    return [self.scores[c.text] for c in candidates]


# Three partial programs: the student prefers a, the verifier c.
CANDIDATES = [scorers.Candidate("q", "a", 10, -2.0),   # log-prob / id: -0.2
              scorers.Candidate("q", "b", 4, -2.0),    # -0.5
              scorers.Candidate("q", "c", 5, -10.0)]   # -2.0
VERIFIER = {"a": math.log(0.1), "b": math.log(0.5), "c": math.log(0.9)}


def _ranking(scores):
  return sorted(range(len(scores)), key=lambda i: -scores[i])


def test_weight_0_is_the_log_probability_and_1_the_verifier():
  logprob = scorers.LogProbScorer().score(CANDIDATES)
  verifier = _FixedVerifier(VERIFIER)
  assert scorers.CombinedScorer(verifier, 0.0).score(CANDIDATES) == logprob
  assert verifier.calls == 0  # w = 0: the verifier is not run
  assert scorers.CombinedScorer(verifier, 1.0).score(CANDIDATES) == [VERIFIER[t] for t in "abc"]
  assert _ranking(logprob) == [0, 1, 2] and _ranking([VERIFIER[t] for t in "abc"]) == [2, 1, 0]


def test_a_weight_in_between_is_the_documented_mix():
  w = 0.5
  combined = scorers.CombinedScorer(_FixedVerifier(VERIFIER), w).score(CANDIDATES)
  expected = [(1 - w) * c.logprob / c.num_tokens + w * VERIFIER[c.text] for c in CANDIDATES]
  assert combined == pytest.approx(expected)
  # The mix can rank a candidate first that neither scorer alone does.
  assert _ranking(combined)[0] == 1
  # Nearly all weight on one scorer ranks as that scorer.
  assert _ranking(scorers.CombinedScorer(_FixedVerifier(VERIFIER), 0.01).score(CANDIDATES)) == [0, 1, 2]
  assert _ranking(scorers.CombinedScorer(_FixedVerifier(VERIFIER), 0.99).score(CANDIDATES)) == [2, 1, 0]
  assert scorers.CombinedScorer(_FixedVerifier(VERIFIER), w).score([]) == []


def test_the_scorer_refuses_a_weight_out_of_range():
  for weight in (-0.1, 1.5, float("nan")):
    with pytest.raises(ValueError, match="weight must be in"):
      scorers.CombinedScorer(_FixedVerifier(VERIFIER), weight)


def test_the_weight_is_a_decode_setting(tmp_path):
  assert DecodeSettings().step_verifier_weight == 0.5
  # Without a verifier the score is the log-probability, whatever the weight.
  assert DecodeSettings(decode="stepwise_beam").verifier_weight == 0.0
  with_verifier = DecodeSettings(decode="stepwise_beam", step_verifier=str(tmp_path))
  assert with_verifier.verifier_weight == 0.5
  for weight in (0, 0.25, 1):
    settings = DecodeSettings(decode="stepwise_beam", step_verifier=str(tmp_path),
                              step_verifier_weight=weight)
    settings.validate()
    assert settings.verifier_weight == weight
    assert f"--step_verifier_weight={weight}" in settings.infer_flags()
  for weight in (-0.5, 1.01, "half", True, float("nan")):
    with pytest.raises(ConfigError, match=r"^--step_verifier_weight: must be a number in \[0, 1\]"):
      DecodeSettings(decode="stepwise_beam", step_verifier_weight=weight).validate(prefix="--")


def test_grounded_scorer_ranks_an_ungrounded_given_below_every_grounded_step():
  question = "Max has 186 apples. He buys 61 more. How many apples does Max have now?"
  prefix = "def solution():\n    start_count = 186\n"
  candidates = [scorers.Candidate(question, prefix + "    bought = 168\n", 20, -1.0),
                scorers.Candidate(question, prefix + "    bought = 61\n", 20, -30.0),
                scorers.Candidate(question, prefix + "    total = start_count * 2\n", 20, -10.0)]
  grounded = scorers.GroundedScorer(scorers.LogProbScorer())
  assert grounded.name == "logprob+grounding"
  scores = grounded.score(candidates)
  assert scores[1:] == scorers.LogProbScorer().score(candidates)[1:]  # grounded: unchanged
  assert scores[0] == -1.0 / 20 - scorers.UNGROUNDED_PENALTY < min(scores[1:])
  # Not pruned: among ungrounded steps alone, their own order stands.
  both = [candidates[0], dataclasses.replace(candidates[0], logprob=-5.0)]
  assert grounded.score(both)[0] > grounded.score(both)[1]


def test_step_grounding_is_a_stepwise_setting():
  assert "--step_grounding=False" in DecodeSettings().infer_flags()
  DecodeSettings(decode="stepwise_beam", step_grounding=True).validate()
  with pytest.raises(ConfigError, match="^DecodeSettings.step_grounding: is only for decode 'stepwise_beam'"):
    DecodeSettings(step_grounding=True).validate()
