"""pad_jax.t5x_hooks.schedules: run length and learning rate."""

import pytest

from pad_jax.t5x_hooks import schedules


def test_learning_rate_schedule_warmup_and_decay():
  lr = schedules.learning_rate_schedule(6e-5, 100, 1100)
  assert float(lr(0)) == 0.0
  assert float(lr(50)) == pytest.approx(3e-5)
  assert float(lr(100)) == pytest.approx(6e-5)
  assert float(lr(600)) == pytest.approx(3e-5)
  assert float(lr(1100)) == pytest.approx(0.0, abs=1e-12)
  const = schedules.learning_rate_schedule(1e-3, 0, 10, decay="constant")
  assert float(const(7)) == pytest.approx(1e-3)
  with pytest.raises(ValueError, match="decay must be"):
    schedules.learning_rate_schedule(1e-3, 0, 10, decay="cosine")
