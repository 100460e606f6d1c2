"""Child processes of the pipeline: clean environment, streamed logs, no orphans.

Every stage that runs another `python -m ...` goes through `run_child`:

* the child's stdout and stderr are merged, appended to a log file in the
  stage directory and handed line by line to a callback (progress parsing);
* the child gets `PR_SET_PDEATHSIG=SIGKILL`, so a pipeline killed with
  `kill -9` never leaves a t5x run behind that would race the resumed one on
  the same checkpoint directory;
* secrets (`OPENAI_API_KEY` and friends) are removed from the child's
  environment unless the caller passes `keep_secrets=True` (only the teacher
  needs its key).
"""

from __future__ import annotations

import collections
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Mapping, Optional, Sequence

SECRET_ENV_VARS = ("OPENAI_API_KEY", "OPENAI_KEY", "AZURE_OPENAI_API_KEY")
_PR_SET_PDEATHSIG = 1


class ChildError(RuntimeError):
  """A child process failed; the message names the command and its log."""


def child_env(keep_secrets: bool = False,
              extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
  """The environment for a child process."""
  env = dict(os.environ)
  if not keep_secrets:
    for name in SECRET_ENV_VARS:
      env.pop(name, None)
  # `t5x.train` starts TF (hiding its GPUs) before any pad-jax code runs in
  # it, so `pad_jax.tf_devices` cannot filter TF's "no NVIDIA driver" lines
  # there; the children's logs are quiet this way instead (it must be set
  # before TF is imported: the child's environment is that place).
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  env["PYTHONUNBUFFERED"] = "1"
  if extra:
    env.update(extra)
  return env


def _die_with_parent() -> None:
  try:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
  except OSError:  # not Linux: best effort only
    pass


def python_command(module: str, *args: str) -> list[str]:
  return [sys.executable, "-m", module, *args]


def run_child(cmd: Sequence[str], log_path: os.PathLike | str, *,
              env: Optional[Mapping[str, str]] = None,
              on_line: Optional[Callable[[str], None]] = None,
              poll: Optional[Callable[[], None]] = None,
              poll_interval_s: float = 1.0,
              cwd: Optional[str] = None) -> None:
  """Runs `cmd` to completion, streaming its output to `log_path` and `on_line`.

  Args:
    cmd: the command line.
    log_path: file the merged stdout/stderr is appended to.
    env: environment (default: `child_env()`, i.e. without secrets).
    on_line: called with each output line (without the newline).
    poll: called about every `poll_interval_s` while the child runs (e.g. to
      count lines of an output file for a progress bar).
    poll_interval_s: see `poll`.
    cwd: working directory of the child.

  Raises:
    ChildError: the child exited with a non-zero status; the message holds
      the last lines of its output and the log path.
  """
  env = dict(child_env() if env is None else env)
  tail = collections.deque(maxlen=15)
  with open(log_path, "a", buffering=1) as log:
    log.write(f"\n$ {' '.join(cmd)}\n")
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, cwd=cwd, text=True, errors="replace", bufsize=1, preexec_fn=_die_with_parent)

    def pump():
      for line in proc.stdout:
        log.write(line)
        line = line.rstrip("\n")
        tail.append(line)
        if on_line is not None:
          on_line(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
      while True:
        try:
          proc.wait(timeout=poll_interval_s)
          break
        except subprocess.TimeoutExpired:
          if poll is not None:
            poll()
    except BaseException:
      proc.kill()
      proc.wait()
      raise
    finally:
      reader.join(timeout=10)
    if poll is not None:
      poll()
  if proc.returncode != 0:
    last = "\n    ".join(tail)
    raise ChildError(f"`{_short_cmd(cmd)}` exited with status {proc.returncode}; "
                     f"full log: {log_path}\n  last lines:\n    {last}")


def _short_cmd(cmd: Sequence[str]) -> str:
  if len(cmd) >= 3 and cmd[1] == "-m":
    return f"python -m {cmd[2]}"
  return cmd[0]


def count_lines(path: os.PathLike | str) -> int:
  """Number of complete lines in `path` (0 when it does not exist)."""
  try:
    with open(path, "rb") as f:
      return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
  except FileNotFoundError:
    return 0


class Stopwatch:
  def __init__(self):
    self.start = time.monotonic()

  @property
  def seconds(self) -> float:
    return time.monotonic() - self.start
