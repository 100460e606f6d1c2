"""The one command-line convention of every `python -m pad_jax.<command>`.

Bad input or a bad setting is one line on stderr naming the file, line and
field (`DataError`) or the flag or config field (`ConfigError`), and exit
status 2, before any work where it can be checked first; an I/O failure is
one line and status 1; Ctrl-C says how to resume and exits 130. Nothing is
lost: the commands resume from what they already wrote.

  if __name__ == "__main__":
    ...flags...
    cli.run(main)   # main(argv) -> exit status; raises DataError / ConfigError
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import sys
from typing import Any, Callable, Iterator, Optional, Sequence

from absl import app

from pad_jax.errors import ConfigError, DataError


def require(**flags: Any) -> None:
  """Raises ConfigError for the first required flag (`name=value`) left unset."""
  for name, value in flags.items():
    if value is None or value == "":
      raise ConfigError(f"--{name} is required")


def no_arguments(argv: Sequence[str]) -> None:
  """Raises ConfigError when positional arguments were given (flags are --name=value)."""
  if len(argv) > 1:
    raise ConfigError(f"unexpected arguments {list(argv[1:])} (flags are --name=value)")


def first_line(error: BaseException) -> str:
  """The first line of an error's message (gin appends its context below it)."""
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def one_line(error: BaseException) -> str:
  """An error's whole message on one line (its line breaks become spaces)."""
  text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
  return text or type(error).__name__


@contextlib.contextmanager
def quiet_gin_search() -> Iterator[None]:
  """Silences the root logger while gin parses files.

  gin logs an error for every search path a file or include is not in before
  it finds it in the next one (or raises); the terminal is kept for real
  errors.
  """
  root = std_logging.getLogger()
  level = root.level
  root.setLevel(std_logging.CRITICAL)
  try:
    yield
  finally:
    root.setLevel(level)


def exit_status(main: Callable[[list[str]], Optional[int]], argv: list[str],
                prefix: str = "error") -> int:
  """Runs `main(argv)`; turns the convention's errors into one line and a status."""
  try:
    return main(argv) or 0
  except (DataError, ConfigError) as e:
    print(f"{prefix}: {one_line(e)}", file=sys.stderr)
    return 2
  except OSError as e:
    print(f"{prefix}: {one_line(e)}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print(f"{prefix}: interrupted; finished work is saved, run the same command again to resume",
          file=sys.stderr)
    return 130


def run(main: Callable[[list[str]], Optional[int]], prefix: str = "error",
        argv: Optional[list[str]] = None) -> None:
  """`absl.app.run(main)` under the convention (never returns)."""
  app.run(lambda args: sys.exit(exit_status(main, args, prefix)), argv=argv)
