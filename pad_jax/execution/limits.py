"""The executor's limits, in one place (standard library only).

Every command, pipeline stage and metric that executes programs takes an
`ExecLimits`, so that `python -m pad_jax.verify`, the pipeline's verify stage
and the seqio metric keep and score exactly the same programs:

  limits = ExecLimits(timeout_s=5.0)
  with limits.executor() as executor: ...
  answers.answers_match(value, gold, limits.answer_mode)

The defaults are the `Executor`'s own (its signature is the one place they are
written) and PaD's answer comparison.

Commands get the same flags from `pad_jax.execution.flags`; the pipeline binds
them in gin (`ExecLimits.timeout_s = 5.0`).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Optional

from pad_jax import answers
from pad_jax.errors import ConfigError
from pad_jax.execution.executor import ISOLATION_LEVELS, MODES, Executor

_EXECUTOR_DEFAULTS = {name: p.default for name, p in inspect.signature(Executor).parameters.items()}


@dataclasses.dataclass(frozen=True)
class ExecLimits:
  """How programs are executed and judged.

  Attributes:
    timeout_s: wall-clock limit per program (its CPU limit is this + 1 s).
    memory_mb: address-space limit per program.
    workers: executor worker processes (None: the usable CPU count).
    answer_mode: answer comparison (`pad_jax.answers`): "tolerance" (the
      default: |pred - gold| <= max(1e-4, 1e-12 * |gold|), never calls a
      wrong answer right), "pad" (round(pred) == round(gold), the paper's; lenient:
      16.5 is right for 16) or "strict" (|pred - gold| < 1e-3, PAL's).
    exec_mode: "return" (the answer is what `solution()` returns) or "print"
      (the last number the program prints).
    isolation: the most isolation to attempt, "auto" for the strongest the
      machine allows (see docs/security.md).
  """

  timeout_s: float = _EXECUTOR_DEFAULTS["timeout_s"]
  memory_mb: int = _EXECUTOR_DEFAULTS["memory_mb"]
  workers: Optional[int] = _EXECUTOR_DEFAULTS["workers"]
  answer_mode: str = answers.DEFAULT_MODE
  exec_mode: str = _EXECUTOR_DEFAULTS["mode"]
  isolation: str = _EXECUTOR_DEFAULTS["isolation"]

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    """Raises ConfigError naming the first impossible field."""
    checks = (
        ("timeout_s", isinstance(self.timeout_s, (int, float)) and self.timeout_s > 0,
         "must be a number > 0"),
        ("memory_mb", isinstance(self.memory_mb, int) and self.memory_mb >= 64,
         "must be an integer >= 64"),
        ("workers", self.workers is None or (isinstance(self.workers, int) and self.workers > 0),
         "must be None or an integer > 0"),
        ("answer_mode", self.answer_mode in answers.MODES, f"must be one of {answers.MODES}"),
        ("exec_mode", self.exec_mode in MODES, f"must be one of {MODES}"),
        ("isolation", self.isolation in ISOLATION_LEVELS, f"must be one of {ISOLATION_LEVELS}"),
    )
    for field, ok, expected in checks:
      if not ok:
        raise ConfigError(f"ExecLimits.{field}: {expected}, got {getattr(self, field)!r}")

  def executor(self, **overrides: Any) -> Executor:
    """An `Executor` with these limits (`overrides`: more Executor arguments)."""
    return Executor(workers=self.workers, timeout_s=self.timeout_s, memory_mb=self.memory_mb,
                    mode=self.exec_mode, isolation=self.isolation, **overrides)

  def matches(self, value: Any, gold: Any) -> bool:
    """Whether an executed program's `value` is the `gold` answer."""
    return answers.answers_match(value, gold, self.answer_mode)


DEFAULT = ExecLimits()
