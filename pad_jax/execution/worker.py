"""The sandbox worker: a standalone, standard-library-only script.

The parent (`pad_jax.execution.executor`) starts it as

  python -I -S -X utf8 worker.py '<json config>'

with an almost empty environment, so no secret of the parent exists in the
worker's memory or in its `/proc/<pid>/environ`. It must not import
`pad_jax` (site-packages are not even on `sys.path` under `-S`): the one
helper it shares, `pad_jax/answers.py`, is loaded by file path.

Start-up (once per worker):
  1. Pre-import the allowed modules, so forks share them.
  2. Isolation, as far as the kernel allows and the config asks: a user
     namespace (unprivileged users only), new network / mount / IPC / UTS /
     pid namespaces, every inherited mount re-mounted read-only, private
     tmpfs over /tmp, /var/tmp and /dev/shm, a fresh /proc. With a pid
     namespace the process forks once and the child, pid 1 of the namespace,
     serves; the original process only waits for it.
  3. no_new_privs and a seccomp filter that denies a list of dangerous
     system calls (inherited by every program).
  4. Say hello on stdout: one JSON line with the isolation features obtained.

Serving: read JSON lines `[[index, source], ...]` from stdin; for each
program, fork a child that drops to this worker's own unprivileged uid, sets
hard rlimits, moves into a fresh empty temp directory, runs the program with
an import allowlist and converts its result to a plain number; the worker
enforces the wall-clock limit, SIGKILLs everything the program left behind
and writes one JSON line `[index, status, value, error, seconds]` per
program to stdout. EOF on stdin ends the worker.
"""

import builtins
import ctypes
import ctypes.util
import errno
import gc
import importlib.util
import json
import os
import platform
import resource
import select
import shutil
import signal
import struct
import sys
import time
import traceback

# --- Constants shared with the parent (kept in sync by tests). ---
STATUSES = ("ok", "syntax_error", "runtime_error", "timeout", "memory_error",
            "no_solution", "bad_return", "crashed", "forbidden_import")
MAX_ERROR_CHARS = 300
MAX_RESULT_BYTES = 4096
PRINT_CAPTURE_BYTES = 1 << 20

# Linux constants.
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEW_ANY = 0x7E020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
PR_SET_DUMPABLE = 4

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_ulong, ctypes.c_char_p)
_prctl = _libc.prctl
_prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                   ctypes.c_ulong, ctypes.c_ulong)


def _check(result, what):
  if result != 0:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def prctl(option, arg=0):
  _check(_prctl(option, arg, 0, 0, 0), f"prctl({option})")


def unshare(flags):
  _check(_libc.unshare(flags), f"unshare({flags:#x})")


def mount(source, target, fstype, flags, data=None):
  enc = lambda s: None if s is None else s.encode()
  _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)),
         f"mount({target})")


# ---------------------------------------------------------------------------
# seccomp: a classic-BPF deny list, assembled once (x86_64 only).
# ---------------------------------------------------------------------------

_AUDIT_ARCH_X86_64 = 0xC000003E
_X86_64_DENIED = {
    "socket": 41, "socketpair": 53, "ptrace": 101, "syslog": 103,
    "personality": 135, "vhangup": 153, "pivot_root": 155, "chroot": 161,
    "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166,
    "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173,
    "init_module": 175, "delete_module": 176, "quotactl": 179,
    "lookup_dcookie": 212, "clock_settime": 227, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
    "perf_event_open": 298, "fanotify_init": 300, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "finit_module": 313, "kexec_file_load": 320,
    "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442,
}
_X86_64_CLONE, _X86_64_CLONE3 = 56, 435


def seccomp_filter():
  """Returns the BPF program (bytes) or None on unsupported architectures.

  Denied calls fail with EPERM; clone3 fails with ENOSYS (so libc falls back
  to clone, whose flags a classic filter can inspect); clone with any
  CLONE_NEW* flag fails with EPERM; x32-ABI calls and foreign architectures
  are refused.
  """
  if platform.machine() != "x86_64":
    return None
  ld_abs, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
  allow, kill = 0x7FFF0000, 0x80000000
  eperm, enosys = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
  denied = sorted(_X86_64_DENIED.values())
  # Layout: arch check (3), load nr (1), x32 (1), clone3 (1), clone (1),
  # denied (n), allow (1), then the tail: [ld flags, jset, allow, eperm,
  # enosys].
  head = [(ld_abs, 0, 0, 4), (jeq, 1, 0, _AUDIT_ARCH_X86_64), (ret, 0, 0, kill),
          (ld_abs, 0, 0, 0)]
  body_len = 3 + len(denied) + 1
  tail_start = len(head) + body_len  # index of "ld flags"
  eperm_at, enosys_at = tail_start + 3, tail_start + 4
  body = []
  def jump_to(target, at):
    return target - at - 1
  at = len(head)
  body.append((jge, jump_to(eperm_at, at), 0, 0x40000000)); at += 1
  body.append((jeq, jump_to(enosys_at, at), 0, _X86_64_CLONE3)); at += 1
  body.append((jeq, jump_to(tail_start, at), 0, _X86_64_CLONE)); at += 1
  for nr in denied:
    body.append((jeq, jump_to(eperm_at, at), 0, nr)); at += 1
  body.append((ret, 0, 0, allow)); at += 1
  assert at == tail_start
  tail = [(ld_abs, 0, 0, 16),  # low 32 bits of clone's flags argument
          (jset, 1, 0, CLONE_NEW_ANY), (ret, 0, 0, allow), (ret, 0, 0, eperm),
          (ret, 0, 0, enosys)]
  return b"".join(struct.pack("HBBI", *ins) for ins in head + body + tail)


def install_seccomp(program):
  class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
  buf = ctypes.create_string_buffer(program)
  fprog = SockFprog(len(program) // 8, ctypes.addressof(buf))
  _check(_prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER,
                ctypes.addressof(fprog), 0, 0), "seccomp")


# ---------------------------------------------------------------------------
# Start-up isolation.
# ---------------------------------------------------------------------------

_SKIP_RO = ("/proc", "/sys", "/dev")
_TMPFS = ("/tmp", "/var/tmp", "/dev/shm")
_MOUNT_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV,
                "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}


def _remount_read_only():
  """Bind-remounts every mount (but /proc, /sys, /dev) read-only."""
  failed = 0
  with open("/proc/self/mountinfo") as f:
    rows = [line.split() for line in f]
  for row in rows:
    target = row[4].encode().decode("unicode_escape")
    if any(target == p or target.startswith(p + "/") for p in _SKIP_RO):
      continue
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY
    for opt in row[5].split(","):
      flags |= _MOUNT_FLAGS.get(opt, 0)
    try:
      mount(None, target, None, flags)
    except OSError:
      failed += 1
  return failed == 0


def setup_namespaces(config, features):
  """Enters new namespaces; returns True if a pid namespace is pending."""
  want = config["namespaces"]
  if not want:
    return False
  flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID
  uid, gid = os.getuid(), os.getgid()
  if config["userns"]:
    flags |= CLONE_NEWUSER
  try:
    unshare(flags)
  except OSError as e:
    features["namespaces_error"] = str(e)
    return False
  if config["userns"]:
    with open("/proc/self/setgroups", "w") as f:
      f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
      f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
      f.write(f"0 {gid} 1")
    features["userns"] = True
  features.update(netns=True, ipcns=True, utsns=True)
  mount(None, "/", None, MS_REC | MS_PRIVATE)
  features["mountns"] = True
  features["readonly_fs"] = _remount_read_only()
  size = max(64, config["tmpfs_mb"])
  for path in _TMPFS:
    if os.path.isdir(path):
      mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV,
            f"size={size}m,mode=1777")
  features["private_tmp"] = True
  return True


def become_pid1(features):
  """Forks; the child is pid 1 of the new pid namespace and returns."""
  pid = os.fork()
  if pid == 0:
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
      mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
      features["private_proc"] = True
    except OSError as e:
      features["private_proc_error"] = str(e)
    features["pidns"] = os.getpid() == 1
    return
  # The original process: let go of the pipes (so the parent sees EOF when
  # pid 1 dies) and mirror pid 1's fate.
  devnull = os.open(os.devnull, os.O_RDWR)
  for fd in (0, 1, 2):
    os.dup2(devnull, fd)
  _, status = os.waitpid(pid, 0)
  os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


# ---------------------------------------------------------------------------
# Running one program (in the forked child).
# ---------------------------------------------------------------------------


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


def _error_text(exc, source_lines):
  """'Type: message (line N: source)' for the innermost program frame."""
  try:
    detail = exc.msg if isinstance(exc, SyntaxError) else exc
    message = f"{type(exc).__name__}: {detail}"
  except BaseException:  # pylint: disable=broad-except
    message = type(exc).__name__
  line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
  if line is None:
    for frame in traceback.extract_tb(exc.__traceback__):
      if frame.filename == "<program>":
        line = frame.lineno
  if line and 0 < line <= len(source_lines):
    message += f" (line {line}: {source_lines[line - 1].strip()[:120]})"
  return message[:MAX_ERROR_CHARS]


class _ChildState:
  """What the worker prepares once for every forked child."""

  def __init__(self, config, answers):
    self.config = config
    self.parse_number = answers.parse_number
    self.allowed = frozenset(config["allowed_modules"])
    self.real_import = builtins.__import__
    self.preloaded = {name: m for name, m in sys.modules.items()}


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
  source_lines = source.splitlines()
  writer = _CappedWriter(PRINT_CAPTURE_BYTES if state.config["mode"] == "print" else 0)
  sys.stdout = sys.stderr = writer
  program_globals = {"__name__": "__main__", "__builtins__": builtins}
  try:
    code = compile(source, "<program>", "exec")
  except MemoryError:
    return "memory_error", None, "MemoryError while compiling"
  except BaseException as e:  # SyntaxError, RecursionError, ValueError (NUL)
    return "syntax_error", None, _error_text(e, source_lines)
  builtins.__import__ = _guarded_import(state)
  try:
    exec(code, program_globals)  # pylint: disable=exec-used
    if state.config["mode"] == "print":
      return _printed_number(state, writer.getvalue(), writer.overflow)
    solution = program_globals.get("solution")
    if not callable(solution):
      return "no_solution", None, "the program defines no solution() function"
    return _to_number(state, solution())
  except ForbiddenImportError as e:
    return "forbidden_import", None, _error_text(e, source_lines)
  except MemoryError as e:
    return "memory_error", None, _error_text(e, source_lines)
  except BaseException as e:  # pylint: disable=broad-except
    return "runtime_error", None, _error_text(e, source_lines)


def _encode_result(status, value, error):
  line = json.dumps([status, value, error], allow_nan=False)
  return line.encode("utf-8", "replace")[:MAX_RESULT_BYTES - 1] + b"\n"


_MEMORY_FALLBACK = _encode_result("memory_error", None, "MemoryError")
_INTERNAL_FALLBACK = _encode_result("crashed", None, "could not report a result")


def child_main(state, source, result_fd, workdir, devnull):
  """Never returns: sets up the sandbox, runs, reports, _exits."""
  config = state.config
  try:
    os.setsid()
    if not config["pidns_active"]:
      prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
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

  def __init__(self, config, answers, features):
    self.config = config
    self.features = features
    self.state = _ChildState(config, answers)
    mb = 1024 * 1024
    cpu = self.cpu_limit = int(config["timeout_s"]) + 1
    self.state.rlimits = [
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_AS, config["memory_mb"] * mb),
        (resource.RLIMIT_FSIZE, config["file_mb"] * mb),
        (resource.RLIMIT_NOFILE, 64),
        (resource.RLIMIT_CORE, 0),
    ]
    if config["max_processes"]:
      self.state.rlimits.append((resource.RLIMIT_NPROC, config["max_processes"]))
    self.devnull = os.open(os.devnull, os.O_RDWR)
    self.pid1 = config["pidns_active"]
    base = "/tmp" if features.get("private_tmp") else config["scratch_dir"]
    self.scratch = os.path.join(base, f"pad_exec_{os.getpid()}")
    os.makedirs(self.scratch, mode=0o711, exist_ok=True)
    self.counter = 0

  def _workdir(self):
    self.counter += 1
    path = os.path.join(self.scratch, str(self.counter))
    os.mkdir(path, 0o700)
    uid = self.config["uid"]
    if uid is not None:
      os.chown(path, uid, uid)
    return path

  def run(self, source):
    """Returns (status, value, error, seconds)."""
    workdir = self._workdir()
    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
      try:
        os.close(read_fd)
        child_main(self.state, source, write_fd, workdir, self.devnull)
      finally:
        os._exit(70)
    os.close(write_fd)
    try:
      payload, timed_out = self._wait_for_result(read_fd, pid, start)
    finally:
      os.close(read_fd)
      self._kill_all(pid)
    exit_status, cpu_seconds = self._reap(pid)
    seconds = time.monotonic() - start
    self._remove(workdir)
    cpu_limited = cpu_seconds >= self.cpu_limit - 0.5
    status, value, error = self._classify(payload, timed_out, exit_status, cpu_limited)
    return status, value, error, round(seconds, 6)

  def _wait_for_result(self, read_fd, pid, start):
    deadline = start + self.config["timeout_s"]
    payload = b""
    try:
      pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
      pidfd = None
    try:
      watch = [read_fd] + ([pidfd] if pidfd is not None else [])
      while True:
        left = deadline - time.monotonic()
        if left <= 0:
          return payload, True
        ready, _, _ = select.select(watch, [], [], min(left, 0.05 if pidfd is None else left))
        if read_fd in ready:
          chunk = os.read(read_fd, MAX_RESULT_BYTES)
          payload += chunk
          if not chunk or b"\n" in payload or len(payload) >= MAX_RESULT_BYTES:
            return payload, False
        elif pidfd is not None and pidfd in ready:
          # The child is gone; collect whatever it wrote before dying.
          ready, _, _ = select.select([read_fd], [], [], 0)
          if ready:
            payload += os.read(read_fd, MAX_RESULT_BYTES)
          return payload, False
        elif pidfd is None:
          done, _ = os.waitpid(pid, os.WNOHANG)
          if done:
            return payload, False
    finally:
      if pidfd is not None:
        os.close(pidfd)

  def _kill_all(self, pid):
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

  def _reap(self, pid):
    """Waits for the child; then for anything that escaped its group."""
    _, status, usage = os.wait4(pid, 0)
    for _ in range(1000):
      try:
        other, _ = os.waitpid(-1, os.WNOHANG)
      except ChildProcessError:
        break
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
    return status, usage.ru_utime + usage.ru_stime

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

  def _remove(self, path):
    try:
      os.rmdir(path)
    except OSError:
      shutil.rmtree(path, ignore_errors=True)

  @staticmethod
  def _classify(payload, timed_out, exit_status, cpu_limited):
    if timed_out:
      return "timeout", None, "wall-clock limit exceeded"
    if payload.endswith(b"\n"):
      try:
        status, value, error = json.loads(payload)
        if (status in STATUSES and
            (value is None or type(value) in (int, float)) and
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


def _load_answers(path):
  spec = importlib.util.spec_from_file_location("_pad_answers", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _preload(modules):
  for name in modules:
    try:
      __import__(name)
    except ImportError:
      pass
  # Warm lazily-built state the programs commonly use.
  import re  # pylint: disable=import-outside-toplevel
  re.compile(r"\d+")


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
    for index, source in batch:
      status, value, error, seconds = worker.run(source)
      out.write(json.dumps([index, status, value, error, seconds]).encode() + b"\n")
      out.flush()


def main():
  config = json.loads(sys.argv[1])
  features = {"uid_drop": False, "seccomp": False, "no_new_privs": False,
              "rlimits": True, "pidns": False, "netns": False,
              "mountns": False}
  prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
  if os.getppid() != config["parent_pid"]:
    os._exit(1)
  answers = _load_answers(config["answers_path"])
  _preload(config["allowed_modules"])
  slot_id = os.getpid()  # unique among live processes: names the uid
  pidns = setup_namespaces(config, features)
  if pidns:
    become_pid1(features)
  config["pidns_active"] = features.get("pidns", False)
  if not config["pidns_active"]:
    try:
      prctl(PR_SET_CHILD_SUBREAPER, 1)
      features["subreaper"] = True
    except OSError:
      pass
  if config["uid_drop"] and os.getuid() == 0 and not features.get("userns"):
    config["uid"] = 200000 + slot_id
    features["uid_drop"] = True
  else:
    config["uid"] = None
  if not features["uid_drop"] and config["max_processes"]:
    # RLIMIT_NPROC counts every process of the real uid; leave room for the
    # ones that already exist.
    config["max_processes"] += _count_own_processes()
  prctl(PR_SET_DUMPABLE, 0)
  prctl(PR_SET_NO_NEW_PRIVS, 1)
  features["no_new_privs"] = True
  if config["seccomp"]:
    program = seccomp_filter()
    if program is not None:
      try:
        install_seccomp(program)
        features["seccomp"] = True
      except OSError as e:
        features["seccomp_error"] = str(e)
  worker = Worker(config, answers, features)
  gc.collect()
  gc.freeze()
  hello = {"ready": True, "features": features, "pid": os.getpid(),
           "uid": config["uid"]}
  sys.stdout.buffer.write(json.dumps(hello).encode() + b"\n")
  sys.stdout.buffer.flush()
  try:
    serve(worker)
  finally:
    shutil.rmtree(worker.scratch, ignore_errors=True)


def _count_own_processes():
  uid, count = os.getuid(), 0
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        count += os.stat(f"/proc/{entry}").st_uid == uid
      except OSError:
        pass
  return count


if __name__ == "__main__":
  main()
