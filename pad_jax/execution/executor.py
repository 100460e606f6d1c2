"""A pool of sandbox workers that executes untrusted programs.

    with Executor(workers=2, timeout_s=2.0) as executor:
      results = executor.run(programs)          # list, input order
      for result in executor.imap(stream): ...  # iterator, input order

Each worker is a fresh `python -I -S` interpreter started by exec (never a
fork of this process, which may be running JAX threads) with an empty
environment; see `worker.py` for what happens inside. This module only
schedules batches over pipes and parses one small JSON line per program: it
never unpickles or evaluates anything a program produced.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import logging
import math
import os
import pathlib
import select
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, BinaryIO, Iterable, Iterator, Optional, Sequence

STATUSES = ("ok", "syntax_error", "runtime_error", "timeout", "memory_error",
            "no_solution", "bad_return", "crashed", "forbidden_import")
MODES = ("return", "print")
ISOLATION_LEVELS = ("auto", "full", "userns", "uid", "basic")

# What a program may import. Everything here is pre-imported by the workers,
# so an import costs nothing at run time.
DEFAULT_ALLOWED_MODULES = (
    "math", "cmath", "fractions", "decimal", "numbers", "itertools",
    "functools", "operator", "collections", "statistics", "datetime",
    "calendar", "time", "re", "string", "random", "heapq", "bisect", "copy",
    "typing", "dataclasses", "enum",
)

# Imported lazily by allowed modules; preloaded with them, since a program's
# uid may not be able to read the standard library (e.g. a pyenv under a
# 0700 /root): every allowed module is imported by the zygote before forking.
LAZY_STDLIB_MODULES = ("_strptime",)

_WORKER_SCRIPT = pathlib.Path(__file__).absolute().with_name("worker.py")
_ANSWERS_MODULE = pathlib.Path(__file__).resolve().parents[1] / "answers.py"
_START_TIMEOUT_S = 60.0

_LEVEL_CONFIG = {
    "full": dict(namespaces=True, userns=False, uid_drop=True),
    "userns": dict(namespaces=True, userns=True, uid_drop=True),
    "uid": dict(namespaces=False, userns=False, uid_drop=True),
    "basic": dict(namespaces=False, userns=False, uid_drop=False),
}


@dataclasses.dataclass(frozen=True)
class ExecResult:
  """The outcome of one program.

  Attributes:
    status: one of `STATUSES`.
    value: the program's answer as a plain number (int or float), or None
      unless `status == "ok"`.
    error: a short message naming the failing line, or None.
    seconds: wall-clock seconds the program ran (0.0 if it never started).
  """
  status: str
  value: Optional[float]
  error: Optional[str]
  seconds: float

  @property
  def ok(self) -> bool:
    return self.status == "ok"


class ExecutorError(RuntimeError):
  """The executor itself failed (e.g. workers could not start)."""


class _WorkerHandle:
  """The parent's view of one worker process."""

  def __init__(self, proc: subprocess.Popen, stderr: BinaryIO, hello: dict,
               leftover: bytes):
    self.proc = proc
    self.stderr = stderr
    self.hello = hello
    self.fd = proc.stdout.fileno()
    self.buffer = leftover
    os.set_blocking(proc.stdin.fileno(), False)
    self.outstanding: collections.deque = collections.deque()  # (index, src)
    self.solo = False  # running one suspect program alone
    self.last_activity = time.monotonic()

  @property
  def busy(self) -> bool:
    return bool(self.outstanding)

  def send(self, batch: list[tuple[int, str]], timeout_s: float) -> None:
    """Writes one batch line; a worker that does not take it in time fails."""
    self.outstanding.extend(batch)
    self.last_activity = time.monotonic()
    data = memoryview(json.dumps(batch).encode("utf-8", "surrogatepass") + b"\n")
    fd = self.proc.stdin.fileno()
    deadline = time.monotonic() + timeout_s
    while data:
      try:
        data = data[os.write(fd, data):]
      except BlockingIOError:
        left = deadline - time.monotonic()
        if left <= 0:
          raise TimeoutError("worker does not read its input") from None
        select.select([], [fd], [], left)

  def kill(self) -> None:
    for stream in (self.proc.stdin, self.proc.stdout):
      try:
        stream.close()
      except OSError:
        pass
    if self.proc.poll() is None:
      self.proc.terminate()  # lets a guardian (no pid namespace) clean up
      try:
        self.proc.wait(timeout=2)
      except subprocess.TimeoutExpired:
        self.proc.kill()
    try:
      self.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
      logging.warning("executor worker %d did not exit", self.proc.pid)
    self.stderr.close()


class Executor:
  """Runs untrusted Python programs in a pool of sandboxed workers.

  Args:
    workers: number of worker processes (default: the usable CPU count).
    timeout_s: wall-clock limit per program (CPU limit is this + 1 s).
    memory_mb: address-space limit per program.
    mode: "return" (the answer is what `solution()` returns; PAL/PaD) or
      "print" (the answer is the last number the program prints).
    isolation: "auto" (the strongest available), or the most to attempt:
      "full" (root: namespaces + per-worker uid), "userns" (namespaces via a
      user namespace, no uid drop), "uid" (uid drop only), "basic" (rlimits,
      process groups, no_new_privs, seccomp only). See docs/security.md.
    max_processes: processes/threads a program may have (RLIMIT_NPROC).
    file_mb: largest file a program may write (RLIMIT_FSIZE).
    allowed_modules: top-level modules a program may import.
    batch_size: programs per worker round trip (default: adaptive, <= 16).
  """

  def __init__(self,
               workers: Optional[int] = None,
               timeout_s: float = 5.0,
               memory_mb: int = 1024,
               mode: str = "return",
               isolation: str = "auto",
               max_processes: int = 32,
               file_mb: int = 16,
               allowed_modules: Sequence[str] = DEFAULT_ALLOWED_MODULES,
               batch_size: Optional[int] = None):
    if mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isolation not in ISOLATION_LEVELS:
      raise ValueError(f"isolation must be one of {ISOLATION_LEVELS}, got {isolation!r}")
    if isolation == "userns" and os.geteuid() == 0:
      raise ValueError("isolation='userns' is the unprivileged path; as root "
                       "use 'full' (or 'uid'/'basic' to test degraded levels)")
    if timeout_s <= 0 or memory_mb < 64:
      raise ValueError("timeout_s must be > 0 and memory_mb >= 64")
    self.num_workers = workers or len(os.sched_getaffinity(0))
    self.timeout_s = float(timeout_s)
    self.memory_mb = int(memory_mb)
    self.mode = mode
    self.requested_isolation = isolation
    self.max_processes = int(max_processes)
    self.file_mb = int(file_mb)
    self.allowed_modules = tuple(allowed_modules)
    self.batch_size = batch_size
    # A busy worker silent for timeout_s + this long is killed and replaced.
    self.unresponsive_grace_s = 10.0
    self.features: dict[str, Any] = {}
    self.isolation: Optional[str] = None
    self._workers: list[_WorkerHandle] = []
    self._level = isolation
    self._next_index = self._stream_base = 0
    self._suspects: set[int] = set()  # indices to run one at a time
    self._scratch: Optional[str] = None
    self._selector: Optional[selectors.DefaultSelector] = None
    # Workers are spawned from one thread that lives as long as the executor:
    # PR_SET_PDEATHSIG fires when the *thread* that forked a worker exits.
    self._spawner: Optional[concurrent.futures.ThreadPoolExecutor] = None

  # -- lifecycle -------------------------------------------------------------

  def __enter__(self) -> "Executor":
    self.start()
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass

  def start(self) -> None:
    """Starts the workers (idempotent).

    With isolation="auto" a level whose workers fail to start (a kernel
    that refuses a namespace half way, say) falls back to the next lower one.
    """
    if self._workers:
      return
    levels = [self.requested_isolation]
    if self.requested_isolation == "auto":
      levels = ["full", "uid", "basic"] if os.geteuid() == 0 else ["userns", "basic"]
    for attempt, level in enumerate(levels):
      self._level = level
      try:
        self._start_pool()
        break
      except ExecutorError as e:
        self.close()
        if attempt == len(levels) - 1:
          raise
        logging.warning("executor: workers failed to start at isolation=%s (%s); "
                        "trying %s", level, e, levels[attempt + 1])
    self.features = dict(self._workers[0].hello["features"])
    self.isolation = isolation_level(self.features)
    log = logging.info
    if self.requested_isolation not in ("auto", self.isolation):
      log = logging.warning
    log("executor: %d workers, isolation=%s (requested %s), features=%s",
        self.num_workers, self.isolation, self.requested_isolation,
        ",".join(sorted(k for k, v in self.features.items() if v is True)))

  def _start_pool(self) -> None:
    self._scratch = _make_scratch_dir()
    self._selector = selectors.DefaultSelector()
    self._spawner = concurrent.futures.ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="pad-executor-spawner")
    spawned = [self._spawn() for _ in range(self.num_workers)]
    try:
      for proc, stderr in spawned:
        self._add_worker(proc, stderr)
    except BaseException:
      for proc, stderr in spawned:
        if proc.poll() is None:
          proc.kill()
          proc.wait()
        stderr.close()
      raise

  def close(self) -> None:
    """Stops all workers and removes their scratch directory."""
    workers, self._workers = self._workers, []
    for worker in workers:
      try:
        worker.proc.stdin.close()
      except OSError:
        pass
    deadline = time.monotonic() + 5
    for worker in workers:
      try:
        worker.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        pass
      worker.kill()
    if self._selector is not None:
      self._selector.close()
      self._selector = None
    if self._spawner is not None:
      self._spawner.shutdown(wait=False)
      self._spawner = None
    if self._scratch:
      shutil.rmtree(self._scratch, ignore_errors=True)
      self._scratch = None

  def _config(self) -> dict:
    return dict(
        _LEVEL_CONFIG[self._level],
        parent_pid=os.getpid(),
        answers_path=str(_ANSWERS_MODULE),
        keep_paths=_kept_paths(),
        allowed_modules=list(self.allowed_modules),
        preload_modules=list(self.allowed_modules) + list(LAZY_STDLIB_MODULES),
        timeout_s=self.timeout_s,
        memory_mb=self.memory_mb,
        file_mb=self.file_mb,
        max_processes=self.max_processes,
        tmpfs_mb=max(64, 4 * self.file_mb),
        mode=self.mode,
        seccomp=True,
        scratch_dir=self._scratch,
    )

  def _spawn(self) -> tuple[subprocess.Popen, BinaryIO]:
    """Starts one worker; returns it and the file its stderr goes to."""
    command = [sys.executable, "-I", "-S", "-X", "utf8", str(_WORKER_SCRIPT),
               json.dumps(self._config())]
    # A worker writes to stderr only when it fails (a traceback): that goes
    # to an unlinked file whose last line names the failure in one log line,
    # never onto the user's terminal.
    stderr = tempfile.TemporaryFile(dir=self._scratch)
    try:
      # No preexec_fn and close_fds: subprocess then uses fork+exec in C (or
      # vfork/posix_spawn), which is safe in a process running JAX threads.
      proc = self._spawner.submit(
          subprocess.Popen, command, stdin=subprocess.PIPE,
          stdout=subprocess.PIPE, stderr=stderr, env={}, close_fds=True,
          cwd="/").result()
    except BaseException:
      stderr.close()
      raise
    return proc, stderr

  def _add_worker(self, proc: subprocess.Popen, stderr: BinaryIO) -> _WorkerHandle:
    hello, leftover = _read_hello(proc, stderr)
    worker = _WorkerHandle(proc, stderr, hello, leftover)
    self._selector.register(worker.fd, selectors.EVENT_READ, worker)
    self._workers.append(worker)
    return worker

  def _replace(self, worker: _WorkerHandle) -> None:
    self._selector.unregister(worker.fd)
    self._workers.remove(worker)
    worker.kill()
    self._add_worker(*self._spawn())

  # -- running ---------------------------------------------------------------

  def run(self, programs: Iterable[Optional[str]]) -> list[ExecResult]:
    """Executes `programs`; returns one ExecResult per program, in order."""
    return list(self.imap(programs))

  def imap(self, programs: Iterable[Optional[str]]) -> Iterator[ExecResult]:
    """Like `run`, but streams: consumes `programs` lazily, yields in order.

    One stream at a time: starting a new `run`/`imap` abandons an unfinished
    stream (programs still in flight finish and are discarded). An Executor
    is not thread-safe.
    """
    self.start()
    source = iter(programs)
    exhausted = False
    queue: collections.deque = collections.deque()
    done: dict[int, ExecResult] = {}
    window = max(256, 64 * self.num_workers)
    # Indices are unique over the executor's life, so answers to programs of
    # an abandoned stream can never be taken for this one's.
    base = next_in = next_out = self._next_index
    self._stream_base = base
    while True:
      while not exhausted and next_in - next_out < window:
        try:
          program = next(source)
        except StopIteration:
          exhausted = True
          break
        if isinstance(program, str) and program.strip():
          queue.append((next_in, program))
        else:
          done[next_in] = ExecResult("no_solution", None, "no program", 0.0)
        next_in += 1
        self._next_index = next_in
      while next_out in done:
        yield done.pop(next_out)
        next_out += 1
        if self._stream_base != base:
          raise RuntimeError("this stream was abandoned: a newer run/imap started")
      if exhausted and next_out == next_in:
        return
      self._dispatch(queue, done)
      self._collect(queue, done)

  def _dispatch(self, queue: collections.deque, done: dict) -> None:
    """Keeps every worker busy: a batch running and at most one waiting.

    Programs suspected of killing a worker go one at a time to a worker
    with nothing else to do, so the next failure names the culprit.
    """
    size = self.batch_size or max(1, min(16, math.ceil(len(queue) / self.num_workers / 2)))
    for worker in list(self._workers):  # a failed send replaces the worker
      if not queue:
        return
      suspect = queue[0][0] in self._suspects
      if worker.outstanding and (suspect or worker.solo or len(worker.outstanding) > size):
        continue
      # Suspects are requeued at the front: after a non-suspect there are none.
      batch = [queue.popleft() for _ in range(1 if suspect else min(size, len(queue)))]
      worker.solo = suspect
      try:
        worker.send(batch, self.unresponsive_grace_s)
      except (OSError, TimeoutError) as e:  # BrokenPipeError: it died
        # Nothing of this batch ran yet: requeue it, blame nobody for it.
        for _ in batch:
          worker.outstanding.pop()
        queue.extendleft(reversed(batch))
        self._on_worker_failure(worker, queue, done, f"worker failed: {e}")

  def _collect(self, queue: collections.deque, done: dict) -> None:
    if not any(w.busy for w in self._workers):
      return
    grace = self.timeout_s + self.unresponsive_grace_s
    for key, _ in self._selector.select(timeout=1.0):
      worker = key.data
      try:
        chunk = os.read(worker.fd, 1 << 16)
      except OSError:
        chunk = b""
      if not chunk:
        self._on_worker_failure(worker, queue, done, "worker died")
        continue
      worker.buffer += chunk
      worker.last_activity = time.monotonic()
      *lines, worker.buffer = worker.buffer.split(b"\n")
      for line in lines:
        result = _parse_result(line, worker.outstanding[0][0] if worker.outstanding else None)
        if result is None:
          self._on_worker_failure(worker, queue, done, "worker sent a malformed line")
          break
        index, _ = worker.outstanding.popleft()
        self._suspects.discard(index)
        if index >= self._stream_base:  # else: left over from an abandoned stream
          done[index] = result
    now = time.monotonic()
    for worker in list(self._workers):
      if worker.busy and now - worker.last_activity > grace:
        self._on_worker_failure(worker, queue, done, "worker stopped answering")

  def _on_worker_failure(self, worker: _WorkerHandle, queue: collections.deque,
                         done: dict, reason: str) -> None:
    """Blames the program in flight, requeues the rest, restarts the worker.

    A worker reports a batch's results together, so with several programs
    outstanding the one in flight is not known: all are requeued as
    suspects and run again one at a time (programs are pure).
    """
    outstanding = [item for item in worker.outstanding if item[0] >= self._stream_base]
    worker.outstanding.clear()
    if len(outstanding) == 1:
      index, _ = outstanding[0]
      seconds = round(time.monotonic() - worker.last_activity, 6)
      done[index] = ExecResult("crashed", None, reason, seconds)
      self._suspects.discard(index)
    elif outstanding:
      self._suspects.update(index for index, _ in outstanding)
      queue.extendleft(reversed(outstanding))
    said = _last_line(worker.stderr)
    logging.warning("executor: %s (pid %d%s); restarting it", reason,
                    worker.proc.pid, f": {said}" if said else "")
    self._replace(worker)


def _parse_result(line: bytes, expected: Optional[int]) -> Optional[ExecResult]:
  """Validates one `[index, status, value, error, seconds]` line."""
  try:
    index, status, value, error, seconds = json.loads(line)
  except (ValueError, TypeError, RecursionError):
    return None
  if (index != expected or status not in STATUSES or
      not (value is None or type(value) is int or
           (type(value) is float and math.isfinite(value))) or
      not (error is None or isinstance(error, str)) or
      type(seconds) not in (int, float)):
    return None
  return ExecResult(status, value, error, float(seconds))


def isolation_level(features: dict) -> str:
  """The name of the isolation level a worker's `features` amount to."""
  if features.get("pidns") and features.get("netns") and features.get("uid_drop"):
    return "full"
  if features.get("pidns") and features.get("userns"):
    return "userns"
  if features.get("uid_drop"):
    return "uid"
  return "basic"


def _make_scratch_dir() -> str:
  """A per-executor directory on tmpfs when possible (~80x cheaper than disk)."""
  base = "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else None
  path = tempfile.mkdtemp(prefix="pad_exec_", dir=base)
  os.chmod(path, 0o711)  # workers' uids must reach their own subdirectories
  return path


def _kept_paths() -> list[str]:
  """What a worker's private tmpfs mounts must leave visible, read-only.

  The interpreter (this process's prefixes and executable's directory),
  its venv and this package, each as named and as resolved (a symlink's
  target may live elsewhere): the outermost existing directories only. The
  parent names them because a worker under `-I -S` may see other prefixes.
  """
  named = (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
           os.path.dirname(sys.executable),
           os.path.dirname(os.path.realpath(sys.executable)),
           str(_WORKER_SCRIPT.parents[1]), str(_ANSWERS_MODULE.parent))
  paths = {p for path in named if path
           for p in (os.path.abspath(path), os.path.realpath(path))
           if os.path.isdir(p)}
  return sorted(p for p in paths if not any(
      p.startswith(other.rstrip("/") + "/") for other in paths if other != p))


def _last_line(stderr: BinaryIO) -> str:
  """The last non-empty line a worker wrote to stderr ("" if none)."""
  try:  # pread: the file offset is shared with the worker, leave it be
    fd = stderr.fileno()
    size = os.fstat(fd).st_size
    text = os.pread(fd, 4096, max(0, size - 4096)).decode("utf-8", "replace")
  except (OSError, ValueError):  # ValueError: closed
    return ""
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return lines[-1][:300] if lines else ""


def _read_hello(proc: subprocess.Popen, stderr: BinaryIO) -> tuple[dict, bytes]:
  """Waits for a worker's start-up line; returns it and any bytes after it."""
  fd = proc.stdout.fileno()
  deadline = time.monotonic() + _START_TIMEOUT_S
  data = b""
  with selectors.DefaultSelector() as selector:
    selector.register(fd, selectors.EVENT_READ)
    while b"\n" not in data:
      left = deadline - time.monotonic()
      if left <= 0 or not selector.select(timeout=left):
        proc.kill()
        proc.wait()
        said = _last_line(stderr)
        raise ExecutorError("executor worker did not start in time"
                            + (f": {said}" if said else ""))
      chunk = os.read(fd, 1 << 16)
      if not chunk:
        break
      data += chunk
  line, _, leftover = data.partition(b"\n")
  try:
    hello = json.loads(line)
  except ValueError:
    hello = {}
  if not isinstance(hello, dict) or not hello.get("ready"):
    try:
      code = proc.wait(timeout=2)  # it is exiting: its stdout is closed
    except subprocess.TimeoutExpired:
      proc.kill()
      code = proc.wait()
    raise ExecutorError(f"executor worker failed to start (exit {code}): "
                        f"{_last_line(stderr) or 'it wrote nothing on stderr'}")
  return hello, leftover
