"""Parse and compare numeric answers (a leaf module: imports nothing from pad_jax).

Two comparison modes:

* ``pad``: the PaD paper's lenient check, ``round(pred) == round(gold)``.
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

MODES = ("pad", "strict")

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


def answers_match(prediction: Any, gold: Any, mode: str = "pad") -> bool:
  """True if `prediction` equals `gold` under `mode` ("pad" or "strict")."""
  if mode not in MODES:
    raise ValueError(f"unknown answer mode {mode!r}; expected one of {MODES}")
  pred, ref = parse_number(prediction), parse_number(gold)
  if pred is None or ref is None:
    return False
  if mode == "pad":
    try:
      return round(pred) == round(ref)
    except OverflowError:
      return False
  tolerance = 1e-3 * max(1.0, abs(ref) / 1e3)
  return abs(pred - ref) < tolerance
