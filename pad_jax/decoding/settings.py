"""`DecodeSettings`: how the student decodes, the one type for every caller.

`python -m pad_jax.infer` builds it from its flags, the pipeline's
`DecodeConfig` (gin) extends it with what to decode, and the decode stage
hands it to its infer child as flags (`infer_flags()`, derived from the
fields). One set of defaults, one `validate()`: a pipeline with settings
infer would refuse stops before its first stage.

A leaf module (no JAX), so configs can be checked before anything heavy is
imported.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from pad_jax.errors import ConfigError

DECODE_MODES = ("greedy", "beam", "sample", "stepwise_beam")
# The modes whose one decoded program `refine_rounds` can refine.
REFINABLE_MODES = ("greedy", "beam", "sample")


def _is_int(value: Any, minimum: int) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
  """How to decode.

  `temperature` defaults to 0.7: the temperature of self-consistency
  sampling (Wang et al., 2023, for PaLM and GPT-3) and the one every
  sampling experiment here uses (`gin_configs/experiments/`); it is also the
  temperature of the step candidates of `stepwise_beam`. 1.0 (the raw model
  distribution) makes a small student write many more programs that do not
  run. Greedy and beam decoding ignore it.

  Attributes:
    decode: `greedy`, `beam`, `sample` or `stepwise_beam` (PaD's step-by-step
      verified decoding: one line at a time, failing prefixes pruned;
      docs/stepwise.md).
    num_decodes: K decodes per question written to the output (K > 1:
      self-consistency with `sample`; the K best beams with `beam`).
    beam_size: beam width (`beam`; `stepwise_beam`: partial programs kept per
      question).
    alpha: beam-search length penalty (t5x's brevity penalty exponent).
    temperature: sampling temperature (`sample`; `stepwise_beam`: of the step
      candidates after the argmax one).
    top_k: sample among the k most likely tokens (0: all).
    max_decode_length: the most tokens decoded per question.
    max_input_length: longer inputs are truncated (keeping the final EOS);
      with `refine_rounds` also the refinement input's budget.
    batch_size: questions per batch.
    seed: sampling seed.
    step_candidates: K candidate next lines per partial program
      (`stepwise_beam`).
    step_verifier: a trained step verifier's checkpoint scoring partial
      programs (`stepwise_beam`; None: the student's log-probability).
    step_verifier_weight: w, the verifier's weight in a step's score with a
      `step_verifier`: `(1 - w) * the student's length-normalized
      log-probability + w * the verifier's log p("correct")`
      (`stepwise_scorers.CombinedScorer`; both are log-probabilities, <= 0):
      0 the log-probability only (the verifier is not loaded), 1 the
      verifier only. Without a `step_verifier` the score is the
      log-probability (w = 0) whatever this says.
    step_grounding: rank a step that states a given the question does not
      contain below every other candidate (`stepwise_beam`;
      `stepwise_scorers.GroundedScorer`, the check of stage III's trigger).
    refine_rounds: R self-refinement rounds (PaD's stage III at inference:
      a program that fails when run is decoded again from its feedback, up to
      R times; `pad_jax.decoding.refine_loop`; 0: off). Needs a student
      trained on refinement data.
  """

  decode: str = "greedy"
  num_decodes: int = 1
  beam_size: int = 4
  alpha: float = 0.6
  temperature: float = 0.7
  top_k: int = 0
  max_decode_length: int = 256
  max_input_length: int = 512
  batch_size: int = 8
  seed: int = 0
  step_candidates: int = 4
  step_verifier: Optional[str] = None
  step_verifier_weight: float = 0.5
  step_grounding: bool = False
  refine_rounds: int = 0

  @property
  def verifier_weight(self) -> float:
    """The verifier's weight w in a step's score (0 without a verifier)."""
    return 0.0 if self.step_verifier is None else float(self.step_verifier_weight)

  @property
  def width(self) -> int:
    """Sequences decoded per question."""
    return self.beam_size if self.decode == "beam" else self.num_decodes

  def validate(self, prefix: Optional[str] = None) -> None:
    """Checks every field and their combinations.

    Args:
      prefix: what the message names a field with (`--` for a command's
        flags); default `ClassName.` (`DecodeSettings.`, `DecodeConfig.`).

    Raises:
      ConfigError: `<prefix><field>: <what is expected>, got <value>` for
        the first field at fault.
    """
    prefix = f"{type(self).__name__}." if prefix is None else prefix
    for field, expected in self._problems():
      raise ConfigError(f"{prefix}{field}: {expected}, got {getattr(self, field)!r}")

  def _problems(self):
    """Yields `(field, expected)` for each check that fails (lazily, in order)."""
    if self.decode not in DECODE_MODES:
      yield "decode", f"must be one of {DECODE_MODES}"
    for name in ("num_decodes", "beam_size", "max_decode_length", "batch_size",
                 "step_candidates"):
      if not _is_int(getattr(self, name), 1):
        yield name, "must be an integer >= 1"
    if not _is_int(self.max_input_length, 2):
      yield "max_input_length", "must be an integer >= 2 (<s> and </s>)"
    if not _is_int(self.top_k, 0):
      yield "top_k", "must be an integer >= 0 (0: off)"
    if not _is_int(self.seed, 0):
      yield "seed", "must be an integer >= 0"
    if not _is_int(self.refine_rounds, 0):
      yield "refine_rounds", "must be an integer >= 0"
    if not (_is_number(self.alpha) and self.alpha >= 0):
      yield "alpha", "must be a number >= 0"
    if not (_is_number(self.temperature) and self.temperature > 0):
      yield "temperature", "must be a number > 0 (decode 'greedy' is argmax)"
    if self.decode == "greedy" and self.num_decodes != 1:
      yield "num_decodes", ("must be 1 with decode 'greedy' (one argmax decode; use "
                            "decode 'sample' for self-consistency, or 'beam')")
    if self.decode == "beam" and self.num_decodes > self.beam_size:
      yield "num_decodes", f"must be <= beam_size ({self.beam_size}) with decode 'beam'"
    if self.decode == "stepwise_beam" and self.num_decodes != 1:
      yield "num_decodes", "must be 1 with decode 'stepwise_beam' (it writes one program)"
    if self.step_verifier is not None and self.decode != "stepwise_beam":
      yield "step_verifier", "is only for decode 'stepwise_beam'"
    if self.step_grounding not in (True, False):
      yield "step_grounding", "must be True or False"
    elif self.step_grounding and self.decode != "stepwise_beam":
      yield "step_grounding", "is only for decode 'stepwise_beam'"
    if not (_is_number(self.step_verifier_weight) and 0 <= self.step_verifier_weight <= 1):
      yield "step_verifier_weight", ("must be a number in [0, 1] (0: the log-probability "
                                     "only, 1: the verifier only)")
    if self.refine_rounds and (self.decode not in REFINABLE_MODES or self.num_decodes != 1):
      yield "refine_rounds", (f"refines one decoded program per question: decode one of "
                              f"{REFINABLE_MODES} with num_decodes 1")
    if self.step_verifier is not None and not os.path.exists(self.step_verifier):
      yield "step_verifier", "does not exist"

  def infer_flags(self) -> list[str]:
    """These settings as `python -m pad_jax.infer` flags (every field; None left out).

    Derived from the fields of `DecodeSettings` (not of a subclass), so the
    child decodes with exactly these settings.
    """
    values = ((f.name, getattr(self, f.name)) for f in dataclasses.fields(DecodeSettings))
    return [f"--{name}={value}" for name, value in values if value is not None]
