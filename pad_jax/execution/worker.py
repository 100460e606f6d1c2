"""The sandbox launcher: sets up isolation, then execs the zygote.

The parent (`pad_jax.execution.executor`) starts it as

  python -I -S -X utf8 worker.py '<json config>'

with an empty environment, so no secret of the parent exists in the
worker's memory or in its `/proc/<pid>/environ`. Standard library only
(site-packages are not on `sys.path` under `-S`).

Steps, each as far as the kernel allows and the config asks:
  1. PR_SET_PDEATHSIG, so the worker dies with the executor.
  2. A user namespace (unprivileged users only), new network / mount / IPC /
     UTS / pid namespaces; every inherited mount re-mounted read-only;
     private root-owned tmpfs over /tmp, /var/tmp and /dev/shm, read-only
     ones over /root and /home, each keeping the interpreter, the venv and
     this package visible (read-only) where they live. With a pid
     namespace the process forks once: the child, pid 1 of the namespace,
     mounts a fresh /proc and goes on; the original process only waits.
  3. The uid programs run as: root gives each worker slot its own; asked
     for "basic", root simulates an unprivileged user instead.
  4. no_new_privs and a seccomp filter denying dangerous system calls
     (both survive exec and are inherited by every program).
  5. Without a pid namespace: fork; this process stays as the guardian (a
     subreaper that kills whatever the programs leave once the zygote or
     the executor is gone), the child becomes the zygote.
  6. exec `zygote.py`, the lean server that forks one child per program,
     passing it the features obtained.
"""

import ctypes
import errno
import json
import os
import platform
import signal
import struct
import sys
import time

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

_libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc
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
    # A process can map only its own uid (to 0 in the namespace). For root
    # that means root: programs are then refused (tests only, see executor).
    with open("/proc/self/uid_map", "w") as f:
      f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
      f.write(f"0 {gid} 1")
    features["userns"] = True
  features.update(netns=True, ipcns=True, utsns=True)
  mount(None, "/", None, MS_REC | MS_PRIVATE)
  features["mountns"] = True
  features["readonly_fs"] = _remount_read_only()
  keep = config["keep_paths"]
  size = max(64, config["tmpfs_mb"])
  features["private_tmp"] = all([
      _private_tmpfs(path, keep, f"size={size}m,mode=0755")
      for path in _SCRATCH_MOUNTS])
  try:
    features["hidden_homes"] = all([
        _private_tmpfs(home, keep, "size=1m,mode=0755", read_only=True)
        for home in _HOMES])
  except OSError as e:
    features["hidden_homes"] = False
    features["hidden_homes_error"] = str(e)
  return True


# Each replaced by an empty root-owned tmpfs: the shared scratch places
# (writable by root only: the zygote keeps its directories in /tmp), and,
# read-only, the home directories, which hold secrets (API-key files, shell
# histories) that are often world-readable.
_SCRATCH_MOUNTS = ("/tmp", "/var/tmp", "/dev/shm")
_HOMES = ("/root", "/home")


def _within(path, parent):
  return path == parent or path.startswith(parent.rstrip("/") + "/")


def _private_tmpfs(target, keep, options, read_only=False):
  """Mounts an empty tmpfs over `target`, except what the workers need.

  The directories in `keep` (the executor's `keep_paths`: the interpreter,
  the venv and this package, outermost directories only) that lie inside
  `target` are bound back at their own path, read-only, e.g. a venv under
  /tmp or a pyenv under /root; the directories leading to them are created
  root-owned on the tmpfs, and nothing else of the old `target` shows.
  Each kept directory is opened before the tmpfs covers it and bound from
  that descriptor (`/proc/self/fd/N`), so no holder mount is needed.

  Args:
    target: the directory to replace; skipped if absent or a symlink.
    keep: absolute directories that must stay visible.
    options: the tmpfs mount data (size, mode).
    read_only: also make the new tmpfs itself read-only.

  Returns:
    False if `target` could not be replaced because it is itself (inside) a
    kept directory; True otherwise.

  Raises:
    OSError: a mount failed.
  """
  if not os.path.isdir(target) or os.path.islink(target):
    return True
  if any(_within(target, path) for path in keep):
    return False
  inside = [p for p in keep if _within(p, target) and os.path.isdir(p)]
  fds = [os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in inside]
  try:
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options)
    for path, fd in zip(inside, fds):
      os.makedirs(path, mode=0o755, exist_ok=True)
      mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
      _bind_read_only(path, os.statvfs(path).f_flag)
  finally:
    for fd in fds:
      os.close(fd)
  if read_only:
    mount(None, target, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
  return True


_STATVFS_FLAGS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV,
                  os.ST_NOEXEC: MS_NOEXEC, os.ST_NOATIME: MS_NOATIME,
                  os.ST_NODIRATIME: MS_NODIRATIME, os.ST_RELATIME: MS_RELATIME}


def _bind_read_only(path, statvfs_flags):
  """Makes the bind mount at `path` read-only, keeping its other flags.

  Inside a user namespace the kernel refuses to clear the flags of an
  inherited mount (nosuid, nodev, noexec, atime), so they are passed again.
  """
  flags = MS_BIND | MS_REMOUNT | MS_RDONLY
  for st_flag, ms_flag in _STATVFS_FLAGS.items():
    if statvfs_flags & st_flag:
      flags |= ms_flag
  mount(None, path, None, flags)


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


def guard(zygote_pid, parent_pid):
  """Without a pid namespace: outlive the zygote, then kill all it left.

  The guardian is a subreaper, so every process the programs started ends
  up as its child once the zygote is gone. It leaves when the zygote exits
  (EOF from the executor) or on SIGTERM, which is also its parent-death
  signal: a crashed executor leaves nothing behind.
  """
  def on_term(signum, frame):
    del signum, frame
    try:
      os.kill(zygote_pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  signal.signal(signal.SIGTERM, on_term)
  prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
  if os.getppid() != parent_pid:
    on_term(None, None)
  devnull = os.open(os.devnull, os.O_RDWR)
  for fd in (0, 1, 2):  # let go of the pipes: EOF reaches the executor
    os.dup2(devnull, fd)
  _, status = os.waitpid(zygote_pid, 0)
  for _ in range(100000):
    try:
      done, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
      break
    if done:
      continue
    with open(f"/proc/self/task/{os.getpid()}/children") as f:
      orphans = [int(p) for p in f.read().split()]
    for orphan in orphans:
      for kill in (os.killpg, os.kill):
        try:
          kill(orphan, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
          pass
    time.sleep(0.001)
  os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def main():
  config = json.loads(sys.argv[1])
  features = {"uid_drop": False, "seccomp": False, "no_new_privs": False,
              "rlimits": True, "pidns": False, "netns": False,
              "mountns": False}
  prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
  if os.getppid() != config["parent_pid"]:
    os._exit(1)
  real_root = os.geteuid() == 0
  slot_id = os.getpid()  # unique among live processes: names the uids
  pidns = setup_namespaces(config, features)
  if pidns:
    become_pid1(features)
  config["pidns_active"] = features.get("pidns", False)
  # A program never runs as the real root. Root gives every worker slot its
  # own uid (that is also what makes RLIMIT_NPROC hold: root ignores it);
  # asked for "basic", root simulates an unprivileged user: the zygote
  # itself drops to a fresh uid and programs keep it.
  config["uid"] = config["zygote_uid"] = None
  if real_root and not features.get("userns"):
    if config["uid_drop"]:
      config["uid"] = 200000 + slot_id
      features["uid_drop"] = True
    else:
      config["zygote_uid"] = 300000 + slot_id
      features["simulated_unprivileged"] = True
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
  if not config["pidns_active"]:
    try:
      prctl(PR_SET_CHILD_SUBREAPER, 1)
      features["subreaper"] = True
    except OSError:
      pass
    pid = os.fork()
    if pid:
      guard(pid, config["parent_pid"])
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the zygote dies with its guardian
    if features.get("subreaper"):
      prctl(PR_SET_CHILD_SUBREAPER, 1)  # not inherited; kept across exec
  config["features"] = features
  zygote = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zygote.py")
  os.execv(sys.executable, [sys.executable, "-I", "-S", "-X", "utf8", zygote,
                            json.dumps(config)])


if __name__ == "__main__":
  main()
