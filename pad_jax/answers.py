"""Parse and compare numeric answers (a leaf module: imports nothing from pad_jax).

Three comparison modes:

* ``tolerance`` (the default, `DEFAULT_MODE`): ``|pred - gold| <= max(1e-4,
  1e-12 * |gold|)``: float noise such as ``40.00000000000001`` for 40 is
  right at any magnitude, ``16.5`` for 16 is wrong. It never calls a wrong
  answer right: a relative 1e-4 would call 20001 right for gold 20000 (GSM8K
  has answers that large), and a relative 1e-12 is still a thousand times
  float64's rounding after a few operations.
* ``pad``: the PaD paper's check, ``round(pred) == round(gold)``, kept by name
  to replicate the paper's evaluation. It is lenient: it calls ``16.5`` right
  for gold 16 (Python rounds half to even) and, on integer-gold benchmarks,
  every ``x.4``/``x.5`` near the gold.
* ``strict``: PAL's check, ``|pred - gold| < 1e-3`` (relative for |gold| > 1e3).

nan, inf and complex values never equal anything.
"""

from __future__ import annotations

import decimal
import fractions
import math
import numbers
import re
from typing import Any, Optional

MODES = ("tolerance", "pad", "strict")
DEFAULT_MODE = "tolerance"
ABSOLUTE_TOLERANCE = 1e-4
RELATIVE_TOLERANCE = 1e-12

_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_STRIP_CHARS = "$€£ \t\n"


def parse_number(value: Any) -> Optional[float]:
  """Returns `value` as a finite float, or None if it is not a plain number.

  Accepts ints, floats, bools, numpy scalars and 0-d arrays, Fractions,
  Decimals and strings such as ``"1,000"``, ``"$5.50"``, ``"25%"`` (-> 25.0)
  or ``"-3"``. Complex numbers, nan and inf give None.

  Args:
    value: the object to convert.

  Returns:
    A finite float, or None.
  """
  if value is None or isinstance(value, complex):
    return None
  if isinstance(value, bool):
    return float(value)
  if isinstance(value, str):
    return _parse_string(value)
  if isinstance(value, (fractions.Fraction, decimal.Decimal)):
    try:
      number = float(value)
    except (OverflowError, ValueError, decimal.InvalidOperation):
      return None
    return number if math.isfinite(number) else None
  if isinstance(value, numbers.Number) or _is_numpy_scalar(value):
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
      return None
    try:
      number = float(value)
    except (TypeError, ValueError, OverflowError):
      return None
    return number if math.isfinite(number) else None
  return None


def _is_numpy_scalar(value: Any) -> bool:
  module = type(value).__module__
  if module != "numpy":
    return False
  shape = getattr(value, "shape", None)
  kind = getattr(getattr(value, "dtype", None), "kind", "")
  return shape == () and kind in "biuf"


def _parse_string(text: str) -> Optional[float]:
  text = text.strip().strip(_STRIP_CHARS).rstrip(".")
  if text.endswith("%"):
    text = text[:-1].strip()
  text = text.replace(",", "").replace("_", "")
  if not _NUMBER_RE.match(text):
    return None
  try:
    number = float(text)
  except (ValueError, OverflowError):
    return None
  return number if math.isfinite(number) else None


def answers_match(prediction: Any, gold: Any, mode: str = DEFAULT_MODE) -> bool:
  """True if `prediction` equals `gold` under `mode` (one of `MODES`)."""
  if mode not in MODES:
    raise ValueError(f"unknown answer mode {mode!r}; expected one of {MODES}")
  pred, ref = parse_number(prediction), parse_number(gold)
  if pred is None or ref is None:
    return False
  if mode == "tolerance":
    return abs(pred - ref) <= max(ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE * abs(ref))
  if mode == "pad":
    try:
      return round(pred) == round(ref)
    except OverflowError:
      return False
  tolerance = 1e-3 * max(1.0, abs(ref) / 1e3)
  return abs(pred - ref) < tolerance
