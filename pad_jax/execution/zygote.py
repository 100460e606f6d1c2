"""The sandbox zygote: serves programs, forking one child per program.

`worker.py` sets up the isolation (namespaces, read-only mounts, seccomp,
no_new_privs) and then execs this lean script:

  python -I -S -X utf8 zygote.py '<json config>'

Being a fresh interpreter with few modules keeps every fork cheap: a fork's
cost is mostly page-table copies and copy-on-write faults, both proportional
to what the forking process has mapped and touches. It must not import
`pad_jax` (site-packages are not on `sys.path` under `-S`); the one helper
it shares, `pad_jax/answers.py`, is executed from its file path.

Protocol: read JSON lines `[[index, source], ...]` on stdin; for each
program, fork a child that drops to this worker's unprivileged uid, sets
hard rlimits, moves into a fresh empty temp directory, runs the program with
an import allowlist and converts its result to a plain number; enforce the
wall-clock limit, SIGKILL everything the program left behind; write one
JSON line `[index, status, value, error, seconds]` per program on stdout, all
of a batch together (or after each second of programs). EOF on stdin ends the
zygote.

Between two forks the zygote does only what the next program needs (system
calls): each memory page it writes after a fork costs a copy-on-write fault,
so parsing, classifying and encoding results wait for the batch's end
(`Worker.execute` / `Worker.finish`), and a child formats its own result
without building objects it does not need.
"""

import builtins
import gc
import json
import os
import resource
import signal
import sys
import time

STATUSES = ("ok", "syntax_error", "runtime_error", "timeout", "memory_error",
            "no_solution", "bad_return", "crashed", "forbidden_import")
MAX_ERROR_CHARS = 300
MAX_RESULT_BYTES = 4096
PRINT_CAPTURE_BYTES = 1 << 20
PR_SET_PDEATHSIG = 1
FLUSH_AFTER_S = 1.0


class ForbiddenImportError(ImportError):
  """Raised when a program imports a module outside the allowlist."""


class _CappedWriter:
  """A stdout stand-in that keeps at most `cap` characters."""

  def __init__(self, cap):
    self.cap, self.size, self.parts, self.overflow = cap, 0, [], False

  def write(self, text):
    text = str(text)
    if self.size < self.cap:
      self.parts.append(text[:self.cap - self.size])
      self.overflow = self.size + len(text) > self.cap
    elif text:
      self.overflow = True
    self.size += len(text)
    return len(text)

  def flush(self):
    pass

  def isatty(self):
    return False

  def getvalue(self):
    return "".join(self.parts)


def _error_text(exc, source):
  """'Type: message (line N: source)' for the innermost program frame."""
  try:
    detail = exc.msg if isinstance(exc, SyntaxError) else exc
    message = f"{type(exc).__name__}: {detail}"
  except BaseException:  # pylint: disable=broad-except
    message = type(exc).__name__
  line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
  if line is None:
    tb = exc.__traceback__
    while tb is not None:
      if tb.tb_frame.f_code.co_filename == "<program>":
        line = tb.tb_lineno
      tb = tb.tb_next
  source_lines = source.splitlines()
  if line and 0 < line <= len(source_lines):
    message += f" (line {line}: {source_lines[line - 1].strip()[:120]})"
  return message[:MAX_ERROR_CHARS]


class _ChildState:
  """What the worker prepares once for every forked child."""

  def __init__(self, config, parse_number):
    self.config = config
    self.parse_number = parse_number
    self.set_pdeathsig = None if config["pidns_active"] else _pdeathsig_setter()
    self.allowed = frozenset(config["allowed_modules"])
    self.real_import = builtins.__import__
    self.guarded_import = _guarded_import(self)
    self.forbid_root = True  # main() relaxes this inside a user namespace
    self.zygote_pid = os.getpid()


def _is_module_namespace(namespace):
  """True if `namespace` is the globals of an imported module (library code)."""
  if not isinstance(namespace, dict):
    return False
  module = sys.modules.get(namespace.get("__name__"))
  return module is not None and getattr(module, "__dict__", None) is namespace


def _guarded_import(state):
  real_import = state.real_import
  allowed = state.allowed

  def guarded(name, globals=None, locals=None, fromlist=(), level=0):
    # Imports made by library code (from its own module globals) pass; the
    # program's own imports must name an allowed top-level module.
    if not _is_module_namespace(globals):
      top = name.partition(".")[0]
      if level or top not in allowed:
        raise ForbiddenImportError(f"import of {name!r} is not allowed")
    return real_import(name, globals, locals, fromlist, level)
  return guarded


def _to_number(state, value):
  """(status, value, error) for a program's return value."""
  if type(value) is int and abs(value) < (1 << 53):
    return "ok", value, None
  number = state.parse_number(value)
  if number is None:
    try:
      shown = repr(value)[:60] if isinstance(value, (str, float, complex)) else None
    except BaseException:  # pylint: disable=broad-except
      shown = None
    kind = type(value).__name__
    return "bad_return", None, f"returned {shown or kind} (not a finite number)"
  return "ok", number, None


def _printed_number(state, text, overflow):
  if overflow:
    return "bad_return", None, "printed more than the capture limit"
  lines = [l for l in text.strip().splitlines() if l.strip()]
  if not lines:
    return "bad_return", None, "printed nothing"
  number = state.parse_number(lines[-1])
  if number is None:
    return "bad_return", None, f"last printed line is not a number: {lines[-1][:60]!r}"
  return "ok", number, None


def run_program(state, source):
  """Runs `source`; returns (status, value, error). Called in the child."""
  writer = _CappedWriter(PRINT_CAPTURE_BYTES if state.config["mode"] == "print" else 0)
  sys.stdout = sys.stderr = writer
  program_globals = {"__name__": "__main__", "__builtins__": builtins}
  try:
    code = compile(source, "<program>", "exec")
  except MemoryError:
    return "memory_error", None, "MemoryError while compiling"
  except BaseException as e:  # SyntaxError, RecursionError, ValueError (NUL)
    return "syntax_error", None, _error_text(e, source)
  builtins.__import__ = state.guarded_import
  try:
    exec(code, program_globals)  # pylint: disable=exec-used
    if state.config["mode"] == "print":
      return _printed_number(state, writer.getvalue(), writer.overflow)
    solution = program_globals.get("solution")
    if not callable(solution):
      return "no_solution", None, "the program defines no solution() function"
    return _to_number(state, solution())
  except ForbiddenImportError as e:
    return "forbidden_import", None, _error_text(e, source)
  except MemoryError as e:
    return "memory_error", None, _error_text(e, source)
  except BaseException as e:  # pylint: disable=broad-except
    return "runtime_error", None, _error_text(e, source)


# A child formats its result itself: json.dumps builds an encoder at every
# call, and each object a child creates costs it memory pages to copy.
_encode_string = json.encoder.encode_basestring_ascii


def _encode_result(status, value, error):
  if type(value) is float and value - value != 0:
    raise ValueError("not a finite number")
  line = '["%s",%s,%s]' % (status, "null" if value is None else repr(value),
                           "null" if error is None else _encode_string(error))
  return line.encode("utf-8", "replace")[:MAX_RESULT_BYTES - 1] + b"\n"


_MEMORY_FALLBACK = _encode_result("memory_error", None, "MemoryError")
_INTERNAL_FALLBACK = _encode_result("crashed", None, "could not report a result")


def child_main(state, source, result_fd, workdir, devnull):
  """Never returns: sets up the sandbox, runs, reports, _exits."""
  config = state.config
  try:
    os.setsid()
    for fd in (0, 1, 2):
      os.dup2(devnull, fd)
    os.closerange(3, result_fd)
    os.closerange(result_fd + 1, 4096)
    for limit, value in state.rlimits:
      resource.setrlimit(limit, (value, value))
    uid = config["uid"]
    if uid is not None:
      os.setgroups([])
      os.setresgid(uid, uid, uid)
      os.setresuid(uid, uid, uid)
    if state.forbid_root and (os.geteuid() == 0 or os.getuid() == 0):
      raise PermissionError("refusing to run a program as root")
    if state.set_pdeathsig is not None:  # after the uid change, which clears it
      state.set_pdeathsig()
      if os.getppid() != state.zygote_pid:
        raise ChildProcessError("the worker is gone")
    os.chdir(workdir)
  except BaseException as e:  # pylint: disable=broad-except
    os.write(result_fd, _encode_result("crashed", None, f"sandbox setup: {e}"[:200]))
    os._exit(0)
  try:
    status, value, error = run_program(state, source)
    payload = _encode_result(status, value, error)
  except MemoryError:
    payload = _MEMORY_FALLBACK
  except BaseException:  # pylint: disable=broad-except
    payload = _INTERNAL_FALLBACK
  try:
    os.write(result_fd, payload)
  finally:
    os._exit(0)


# ---------------------------------------------------------------------------
# The worker: fork, wait, clean up.
# ---------------------------------------------------------------------------


class Worker:
  """Runs programs one at a time in forked children."""

  def __init__(self, config, parse_number, features):
    self.config = config
    self.features = features
    self.state = _ChildState(config, parse_number)
    mb = 1024 * 1024
    cpu = self.cpu_limit = int(config["timeout_s"]) + 1
    self.state.rlimits = [
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_AS, config["memory_mb"] * mb),
        (resource.RLIMIT_FSIZE, config["file_mb"] * mb),
        (resource.RLIMIT_NOFILE, 64),
        (resource.RLIMIT_CORE, 0),
    ]
    if config["max_processes"] and config["uid"] is not None:
      self.state.rlimits.append((resource.RLIMIT_NPROC, config["max_processes"]))
    self.devnull = os.open(os.devnull, os.O_RDWR)
    self.pid1 = config["pidns_active"]
    self.last_pid_fd = _open_last_pid() if self.pid1 else None
    base = "/tmp" if features.get("private_tmp") else config["scratch_dir"]
    self.scratch = os.path.join(base, f"pad_exec_{os.getpid()}")
    os.makedirs(self.scratch, mode=0o711, exist_ok=True)
    self.counter = 0
    self.current_pid = 0
    self.timed_out = False

  def workdirs(self, count):
    """Names for the next `count` programs' working directories."""
    first = self.counter + 1
    self.counter += count
    return [f"{self.scratch}/{n}" for n in range(first, first + count)]

  def _make_workdir(self, path):
    os.mkdir(path, 0o700)
    uid = self.config["uid"]
    if uid is not None:
      os.chown(path, uid, uid)

  def execute(self, source, workdir):
    """Runs one program in a forked child; returns what `finish` needs.

    Everything between two forks costs a copy-on-write fault per memory
    page it writes (a fork write-protects all of the zygote's pages), so
    this keeps to the system calls and leaves parsing, classifying and
    encoding the result to `finish`, which `serve` calls once per batch.
    """
    self._make_workdir(workdir)
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
      try:
        os.close(read_fd)
        child_main(self.state, source, write_fd, workdir, self.devnull)
      finally:
        os._exit(70)
    os.close(write_fd)
    # Block in waitid until the child exits (SIGALRM kills it at the
    # deadline).
    self.current_pid, self.timed_out = pid, False
    signal.setitimer(signal.ITIMER_REAL, self.config["timeout_s"])
    exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # not reaped yet
    self.current_pid = 0
    signal.setitimer(signal.ITIMER_REAL, 0)
    seconds = time.monotonic() - start
    # As pid 1 of its own pid namespace: if no pid was handed out after the
    # child's, the child started no process, and there is nothing to kill.
    alone = (self.last_pid_fd is not None and
             os.pread(self.last_pid_fd, 32, 0) == b"%d\n" % pid)
    if not alone:
      # Kill the rest of its process group while the (zombie) child still
      # holds its pid, so the group id cannot name a stranger's group yet.
      self.kill_all(pid)
    if exited.si_code == os.CLD_EXITED:
      exit_status, cpu = os.waitpid(pid, 0)[1], 0.0
    else:  # killed: was it the CPU-time limit?
      _, exit_status, usage = os.wait4(pid, 0)
      cpu = usage.ru_utime + usage.ru_stime
    if not alone:
      self._reap_others()
    try:
      payload = os.read(read_fd, MAX_RESULT_BYTES)
    except BlockingIOError:
      payload = b""
    os.close(read_fd)
    self.remove_tree(workdir)
    return payload, self.timed_out, exit_status, cpu, seconds

  def finish(self, raw):
    """(status, value, error, seconds) from what `execute` returned."""
    payload, timed_out, exit_status, cpu, seconds = raw
    cpu_limited = cpu >= self.cpu_limit - 0.5
    status, value, error = self._classify(payload, timed_out, exit_status, cpu_limited)
    return status, value, error, round(seconds, 6)

  def kill_all(self, pid):
    """SIGKILLs the program and everything it started."""
    if self.pid1:
      try:
        os.kill(-1, signal.SIGKILL)  # every process in our pid namespace
      except ProcessLookupError:
        pass
      return
    try:
      os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
      pass

  def _reap_others(self):
    """Reaps everything that escaped the program's process group."""
    for _ in range(1000):
      try:
        other, _ = os.waitpid(-1, os.WNOHANG)
      except ChildProcessError:
        return
      if other:
        continue
      # Live descendants were re-parented to us (pid 1 / subreaper).
      if self.pid1:
        try:
          os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
          pass
      else:
        self._kill_children()
      time.sleep(0.001)

  def _kill_children(self):
    try:
      with open(f"/proc/self/task/{os.getpid()}/children") as f:
        pids = [int(p) for p in f.read().split()]
    except OSError:
      pids = []
    for child in pids:
      for kill in (os.killpg, os.kill):
        try:
          kill(child, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
          pass

  def remove_tree(self, path):
    try:
      os.rmdir(path)
    except OSError:
      for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
          _ignore_errors(os.unlink, os.path.join(root, name))
        for name in dirs:
          target = os.path.join(root, name)
          _ignore_errors(os.unlink if os.path.islink(target) else os.rmdir, target)
      _ignore_errors(os.rmdir, path)

  @staticmethod
  def _classify(payload, timed_out, exit_status, cpu_limited):
    if timed_out:
      return "timeout", None, "wall-clock limit exceeded"
    if payload.endswith(b"\n"):
      try:
        status, value, error = json.loads(payload)
        if (status in STATUSES and _plain_number_or_none(value) and
            (error is None or isinstance(error, str))):
          return status, value, error and error[:MAX_ERROR_CHARS]
      except (ValueError, TypeError, RecursionError):
        pass
      return "crashed", None, "malformed result from the program process"
    if os.WIFSIGNALED(exit_status):
      sig = os.WTERMSIG(exit_status)
      if sig in (signal.SIGXCPU, signal.SIGKILL) and cpu_limited:
        return "timeout", None, f"CPU-time limit exceeded ({signal.Signals(sig).name})"
      try:
        name = signal.Signals(sig).name
      except ValueError:
        name = str(sig)
      return "crashed", None, f"killed by {name}"
    code = os.waitstatus_to_exitcode(exit_status)
    return "crashed", None, f"exited with code {code} without a result"


def _plain_number_or_none(value):
  if value is None or type(value) is int:
    return True
  return type(value) is float and value - value == 0  # finite


def serve(worker):
  stdin = sys.stdin.buffer
  out = sys.stdout.buffer
  while True:
    line = stdin.readline()
    if not line:
      return
    try:
      batch = json.loads(line)
    except ValueError:
      return
    # Results go out once per batch (see Worker.execute; the executor sends
    # small batches, so they still stream), and after a second of programs,
    # so the executor hears from a busy worker at least that often.
    pending, waited = [], 0.0
    for (index, source), workdir in zip(batch, worker.workdirs(len(batch))):
      raw = worker.execute(source, workdir)
      pending.append((index, raw))
      waited += raw[-1]
      if waited > FLUSH_AFTER_S:
        _write_results(out, worker, pending)
        pending, waited = [], 0.0
    _write_results(out, worker, pending)


def _write_results(out, worker, pending):
  if pending:
    out.write(b"".join(json.dumps([index, *worker.finish(raw)]).encode() + b"\n"
                       for index, raw in pending))
    out.flush()




def _ignore_errors(function, path):
  try:
    function(path)
  except OSError:
    pass


def _load_answers(path):
  """Executes pad_jax/answers.py as a module-like namespace."""
  namespace = {"__name__": "_pad_answers", "__file__": path}
  with open(path, encoding="utf-8") as f:
    exec(compile(f.read(), path, "exec"), namespace)  # pylint: disable=exec-used
  return namespace


def _preload(modules):
  for name in modules:
    try:
      __import__(name)
    except ImportError:
      pass


def _open_last_pid():
  """A descriptor on the last pid this pid namespace handed out, or None."""
  try:
    fd = os.open("/proc/sys/kernel/ns_last_pid", os.O_RDONLY | os.O_CLOEXEC)
  except OSError:
    return None
  try:
    os.pread(fd, 32, 0)
  except OSError:
    os.close(fd)
    return None
  return fd


def _pdeathsig_setter():
  """A function that sets PR_SET_PDEATHSIG=SIGKILL (needs ctypes)."""
  import ctypes  # pylint: disable=import-outside-toplevel
  libc = ctypes.CDLL(None, use_errno=True)
  prctl = libc.prctl
  prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                    ctypes.c_ulong, ctypes.c_ulong)
  return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _uid_zero_is_root():
  """True if uid 0 here is the real root (not a user namespace's)."""
  try:
    with open("/proc/self/uid_map") as f:
      return any(l.split()[:2] == ["0", "0"] for l in f)
  except OSError:
    return True


def _count_own_processes():
  uid, count = os.getuid(), 0
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        count += os.stat(f"/proc/{entry}").st_uid == uid
      except OSError:
        pass
  return count


def _drop_to(uid):
  """The zygote itself becomes `uid` (root simulating an unprivileged user)."""
  os.setgroups([])
  os.setresgid(uid, uid, uid)
  os.setresuid(uid, uid, uid)


def main():
  config = json.loads(sys.argv[1])
  features = config.pop("features")
  answers = _load_answers(config["answers_path"])
  _preload(config["preload_modules"])
  worker = Worker(config, answers["parse_number"], features)
  if config["zygote_uid"] is not None:
    os.chown(worker.scratch, config["zygote_uid"], config["zygote_uid"])
    _drop_to(config["zygote_uid"])
    if worker.state.set_pdeathsig is not None:
      worker.state.set_pdeathsig()  # a credential change clears it
  if config["uid"] is None and config["max_processes"]:
    # RLIMIT_NPROC counts every process of the real uid: leave room for the
    # ones that exist already.
    count = _count_own_processes()
    worker.state.rlimits.append((resource.RLIMIT_NPROC, config["max_processes"] + count))
  worker.state.forbid_root = _uid_zero_is_root()
  def on_alarm(signum, frame):
    del signum, frame
    if worker.current_pid:
      worker.timed_out = True
      worker.kill_all(worker.current_pid)
  signal.signal(signal.SIGALRM, on_alarm)
  gc.collect()
  gc.freeze()
  hello = {"ready": True, "features": features, "pid": os.getpid(),
           "uid": config["uid"]}
  sys.stdout.buffer.write(json.dumps(hello).encode() + b"\n")
  sys.stdout.buffer.flush()
  try:
    serve(worker)
  finally:
    worker.remove_tree(worker.scratch)


if __name__ == "__main__":
  main()
