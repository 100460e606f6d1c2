"""The executor's command-line flags, the same in every command that executes programs.

  from pad_jax.execution import flags as exec_flags
  exec_flags.define()              # at the program's start, before app.run
  limits = exec_flags.limits()     # in main(): an ExecLimits (ConfigError if impossible)
"""

from __future__ import annotations

import dataclasses

from absl import flags

from pad_jax import answers
from pad_jax.execution.executor import ISOLATION_LEVELS, MODES
from pad_jax.execution.limits import DEFAULT, ExecLimits

_FLAGS = {}


def define() -> None:
  """Defines --timeout_s, --memory_mb, --workers, --mode, --exec_mode, --isolation."""
  _FLAGS.update(
      timeout_s=flags.DEFINE_float("timeout_s", DEFAULT.timeout_s,
                                   "Wall-clock limit per program (seconds)."),
      memory_mb=flags.DEFINE_integer("memory_mb", DEFAULT.memory_mb,
                                     "Address-space limit per program (MB)."),
      workers=flags.DEFINE_integer("workers", DEFAULT.workers,
                                   "Executor worker processes (default: usable CPUs)."),
      answer_mode=flags.DEFINE_enum("mode", DEFAULT.answer_mode, list(answers.MODES),
                                    "Answer comparison: tolerance (|pred - gold| <= max(1e-4, "
                                    "1e-12 * |gold|); never calls a wrong answer right), pad "
                                    "(rounded, the paper's; lenient: 16.5 is right for 16) or "
                                    "strict (|pred - gold| < 1e-3, PAL's)."),
      exec_mode=flags.DEFINE_enum("exec_mode", DEFAULT.exec_mode, list(MODES),
                                  "Answer = what solution() returns, or the last printed number."),
      isolation=flags.DEFINE_enum("isolation", DEFAULT.isolation, list(ISOLATION_LEVELS),
                                  "Sandbox isolation to attempt (see docs/security.md)."),
  )


def limits() -> ExecLimits:
  """The ExecLimits the flags ask for."""
  return ExecLimits(**{name: flag.value for name, flag in _FLAGS.items()})


_FLAG_NAMES = {"answer_mode": "mode"}


def as_flags(limits_: ExecLimits) -> list[str]:
  """The command-line flags that give a child command `limits_` (inverse of `limits()`)."""
  return [f"--{_FLAG_NAMES.get(name, name)}={value}"
          for name, value in dataclasses.asdict(limits_).items() if value is not None]
