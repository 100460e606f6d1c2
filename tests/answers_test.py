"""Tests for pad_jax.answers."""

import decimal
import fractions

import numpy as np
import pytest

from pad_jax import answers


@pytest.mark.parametrize("value,expected", [
    (3, 3.0), (2.5, 2.5), (True, 1.0), (np.int64(7), 7.0), (np.float32(1.5), 1.5),
    (fractions.Fraction(1, 4), 0.25), (decimal.Decimal("2.50"), 2.5),
    ("1,000", 1000.0), ("$5.50", 5.5), ("25%", 25.0), ("-3", -3.0), (" 42. ", 42.0),
    ("1e3", 1000.0), (np.array(4.0), 4.0),
])
def test_parse_number_accepts(value, expected):
  assert answers.parse_number(value) == expected


@pytest.mark.parametrize("value", [
    None, "abc", "", float("nan"), float("inf"), -float("inf"), 1 + 2j, [1], {"a": 1},
    "nan", "inf", np.array([1.0, 2.0]), decimal.Decimal("NaN"), 10**400,
])
def test_parse_number_rejects(value):
  assert answers.parse_number(value) is None


def test_pad_mode_rounds():
  assert answers.answers_match(17.6, 18, mode="pad")
  assert answers.answers_match("18", 18.2, mode="pad")
  assert not answers.answers_match(17.4, 18, mode="pad")


def test_strict_mode():
  assert answers.answers_match(0.3333, 0.33334, mode="strict")
  assert not answers.answers_match(17.6, 18, mode="strict")
  assert answers.answers_match(1_000_000.5, 1_000_000, mode="strict")
  assert not answers.answers_match(1_000_002, 1_000_000, mode="strict")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1j, None, "x"])
def test_nonfinite_never_match(bad):
  for mode in answers.MODES:
    assert not answers.answers_match(bad, bad, mode=mode)
    assert not answers.answers_match(bad, 1, mode=mode)


def test_unknown_mode():
  with pytest.raises(ValueError, match="unknown answer mode"):
    answers.answers_match(1, 1, mode="fuzzy")


def test_tolerance_mode_is_the_default_and_never_calls_a_wrong_answer_right():
  assert answers.DEFAULT_MODE == "tolerance"
  assert answers.answers_match(40.00000000000001, 40)  # float noise
  assert answers.answers_match(0.30000000000000004, 0.3)
  assert not answers.answers_match(16.5, 16)  # round(16.5) == 16 in Python
  assert not answers.answers_match(16.4, 16)
  assert not answers.answers_match(20_001, 20_000)  # a relative 1e-4 would say yes
  assert not answers.answers_match(1_000_000.5, 1_000_000)
  assert answers.answers_match(3e12 / 7 * 7, 3e12)  # float noise at any magnitude
  assert answers.answers_match(2.50004, 2.5)
  # The paper's rounding stays available by name, and is lenient.
  assert answers.answers_match(16.5, 16, mode="pad")
