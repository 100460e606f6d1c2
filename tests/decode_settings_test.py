"""pad_jax.decoding.settings: the one decode-settings type, its defaults and checks."""

import dataclasses

from absl import flags
import pytest

from pad_jax import infer
from pad_jax.decoding.settings import DecodeSettings
from pad_jax.errors import ConfigError


def test_defaults_are_valid():
  settings = DecodeSettings()
  settings.validate()
  assert (settings.decode, settings.num_decodes, settings.temperature) == ("greedy", 1, 0.7)
  assert settings.width == 1
  assert DecodeSettings(decode="beam", beam_size=3, num_decodes=2).width == 3


@pytest.mark.parametrize("changes, message", [
    (dict(decode="beem"), "decode: must be one of ('greedy', 'beam', 'sample', 'stepwise_beam'), "
                          "got 'beem'"),
    (dict(num_decodes=0), "num_decodes: must be an integer >= 1, got 0"),
    (dict(beam_size=0), "beam_size: must be an integer >= 1"),
    (dict(max_decode_length=0), "max_decode_length: must be an integer >= 1"),
    (dict(batch_size=2.5), "batch_size: must be an integer >= 1, got 2.5"),
    (dict(step_candidates=0), "step_candidates: must be an integer >= 1"),
    (dict(max_input_length=1), "max_input_length: must be an integer >= 2"),
    (dict(top_k=-1), "top_k: must be an integer >= 0"),
    (dict(seed=-1), "seed: must be an integer >= 0"),
    (dict(refine_rounds=-1), "refine_rounds: must be an integer >= 0"),
    (dict(refine_rounds=True), "refine_rounds: must be an integer >= 0"),
    (dict(alpha=-0.1), "alpha: must be a number >= 0"),
    (dict(temperature=0.0), "temperature: must be a number > 0"),
    (dict(decode="sample", temperature="hot"), "temperature: must be a number > 0"),
    (dict(decode="greedy", num_decodes=2), "num_decodes: must be 1 with decode 'greedy'"),
    (dict(decode="beam", beam_size=2, num_decodes=3),
     "num_decodes: must be <= beam_size (2) with decode 'beam', got 3"),
    (dict(decode="stepwise_beam", num_decodes=2),
     "num_decodes: must be 1 with decode 'stepwise_beam'"),
    (dict(decode="stepwise_beam", step_candidates=2, temperature=0.0), "temperature: must be"),
    (dict(step_verifier="/no/such"), "step_verifier: is only for decode 'stepwise_beam'"),
    (dict(decode="stepwise_beam", step_verifier="/no/such"),
     "step_verifier: does not exist, got '/no/such'"),
    (dict(decode="sample", num_decodes=5, refine_rounds=1),
     "refine_rounds: refines one decoded program per question"),
    (dict(decode="stepwise_beam", refine_rounds=1), "refine_rounds: refines one"),
])
def test_each_check_names_its_field(changes, message):
  with pytest.raises(ConfigError) as error:
    DecodeSettings(**changes).validate()
  assert str(error.value).startswith("DecodeSettings." + message), error.value


def test_prefix_names_the_flag():
  with pytest.raises(ConfigError, match=r"^--refine_rounds: must be an integer >= 0"):
    DecodeSettings(refine_rounds=-1).validate(prefix="--")


def test_valid_combinations(tmp_path):
  DecodeSettings(decode="sample", num_decodes=20, temperature=1.0, top_k=40).validate()
  DecodeSettings(decode="beam", beam_size=4, num_decodes=4).validate()
  DecodeSettings(decode="stepwise_beam", beam_size=2, step_candidates=3,
                 step_verifier=str(tmp_path)).validate()
  DecodeSettings(decode="beam", refine_rounds=2).validate()


def test_a_subclass_is_named_by_its_class():
  @dataclasses.dataclass(frozen=True)
  class PipelineDecode(DecodeSettings):
    limit: int = 3

  with pytest.raises(ConfigError, match=r"^PipelineDecode.num_decodes: must be 1 with"):
    PipelineDecode(num_decodes=4).validate()
  # The child's flags are DecodeSettings' fields only.
  assert PipelineDecode().infer_flags() == DecodeSettings().infer_flags()


def test_infer_flags_round_trip_through_the_command_flags():
  values = flags.FlagValues()
  infer.define_flags(values)
  settings = DecodeSettings(decode="sample", num_decodes=5, temperature=0.9, top_k=8,
                            alpha=0.8, batch_size=3, seed=7, max_input_length=300)
  values(["infer"] + settings.infer_flags())
  assert infer.settings_from_flags(values) == settings
  defaults = flags.FlagValues()
  infer.define_flags(defaults)
  defaults(["infer"])
  assert infer.settings_from_flags(defaults) == DecodeSettings()  # the same defaults
