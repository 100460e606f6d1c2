"""Token prices and the running cost estimate of a synthesis job.

Prices are USD per million tokens (input, output). The table is a convenience
with list prices at the time of writing; pass `--price_input_per_mtok` and
`--price_output_per_mtok` (or `Prices(...)`) for your provider, since prices
change and self-hosted servers cost nothing per token. The Batch API is billed
at `BATCH_DISCOUNT` of the online price.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from pad_jax.errors import ConfigError

# model name prefix -> (USD per 1M input tokens, USD per 1M output tokens).
PRICE_TABLE: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-4-turbo": (10.00, 30.00),
}
BATCH_DISCOUNT = 0.5


@dataclasses.dataclass(frozen=True)
class Prices:
  """USD per million input and output tokens."""
  input_per_mtok: float
  output_per_mtok: float

  def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


def lookup_prices(model: str, input_per_mtok: Optional[float] = None,
                  output_per_mtok: Optional[float] = None,
                  batch: bool = False) -> Optional[Prices]:
  """Prices for `model`: the user's override, else the longest table prefix.

  Returns:
    Prices (discounted for the Batch API), or None if the model is unknown
    and no override was given.
  """
  if input_per_mtok is not None or output_per_mtok is not None:
    if input_per_mtok is None or output_per_mtok is None:
      raise ConfigError("give both the input and the output price per million tokens")
    if input_per_mtok < 0 or output_per_mtok < 0:
      raise ConfigError("prices must be >= 0")
    prices = Prices(input_per_mtok, output_per_mtok)
  else:
    matches = [name for name in PRICE_TABLE if model.startswith(name)]
    if not matches:
      return None
    prices = Prices(*PRICE_TABLE[max(matches, key=len)])
  if batch:
    prices = Prices(prices.input_per_mtok * BATCH_DISCOUNT, prices.output_per_mtok * BATCH_DISCOUNT)
  return prices
