"""Tests for pad_jax.execution: API, statuses, correctness, process hygiene."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

from process_testlib import process_tree
from pad_jax import answers
from pad_jax import execution
from pad_jax.execution import zygote

SECRET = "sk-pad-test-secret-do-not-leak"


def _alive(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().split(") ")[1][0] != "Z"
  except OSError:
    return False


@pytest.fixture(scope="module")
def executor():
  os.environ["OPENAI_API_KEY"] = SECRET
  with execution.Executor(workers=2, timeout_s=2.0, memory_mb=512) as ex:
    yield ex


def test_statuses_match_the_worker():
  assert execution.STATUSES == zygote.STATUSES


def test_basic_statuses_values_and_order(executor):
  programs = [
      "def solution():\n    return 6 * 7",
      "def solution():\n    return 1 / 4",
      "def solution():\n    x = 1\n    return x / 0",
      "def solution(:\n    return 1",
      "x = 5",
      "import os\ndef solution():\n    return 1",
      "def solution():\n    return 'forty'",
      "def solution():\n    return float('inf')",
      "import math\ndef solution():\n    return math.floor(2.7)",
      None,
      "",
      "from fractions import Fraction\ndef solution():\n    return Fraction(3, 4)",
      "from decimal import Decimal\ndef solution():\n    return Decimal('1.5')",
      "def solution():\n    return '$1,000'",
      "def solution():\n    return True",
      "def solution():\n    return 10 ** 30",
  ]
  results = executor.run(programs)
  got = [(r.status, r.value) for r in results]
  assert got == [
      ("ok", 42), ("ok", 0.25), ("runtime_error", None), ("syntax_error", None),
      ("no_solution", None), ("forbidden_import", None), ("bad_return", None),
      ("bad_return", None), ("ok", 2), ("no_solution", None), ("no_solution", None),
      ("ok", 0.75), ("ok", 1.5), ("ok", 1000.0), ("ok", 1.0), ("ok", 1e30),
  ]
  assert "line 3: return x / 0" in results[2].error
  assert results[2].error.startswith("ZeroDivisionError")
  assert "'os'" in results[5].error
  assert all(isinstance(r.seconds, float) for r in results)
  assert all(r.ok == (r.status == "ok") for r in results)


def test_imap_streams_lazily_in_input_order(executor):
  consumed = []

  def source():
    for i in range(300):
      consumed.append(i)
      # Uneven run times so results come back out of order.
      yield f"def solution():\n    return sum(range({(i % 7) * 2000})) * 0 + {i}"

  stream = executor.imap(source())
  first = next(stream)
  assert first.value == 0
  assert len(consumed) < 300  # bounded look-ahead, not the whole input
  rest = list(stream)
  assert [r.value for r in rest] == list(range(1, 300))


def test_run_empty_and_reuse(executor):
  assert executor.run([]) == []
  assert executor.run(["def solution():\n    return 1"])[0].value == 1


def test_print_mode():
  programs = [
      "print(3 + 4)",
      "def solution():\n    return 2\nprint('answer:')\nprint(solution())",
      "x = 1",
      "print('no number here')",
      "print('x' * 2_000_000)",  # more than the 1 MB captured
  ]
  with execution.Executor(workers=1, timeout_s=5.0, mode="print") as ex:
    got = [(r.status, r.value) for r in ex.run(programs)]
  assert got == [("ok", 7), ("ok", 2), ("bad_return", None), ("bad_return", None),
                 ("bad_return", None)]


def test_timeout_is_enforced_from_outside(executor):
  program = textwrap.dedent("""\
      import collections
      def solution():
          signal = collections._sys.modules['signal']
          for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGXCPU):
              signal.signal(s, signal.SIG_IGN)
          while True:
              try:
                  pass
              except BaseException:
                  pass
      """)
  start = time.monotonic()
  result, = executor.run([program])
  assert result.status == "timeout"
  assert 1.9 < result.seconds < 10
  assert time.monotonic() - start < 30


def test_worker_environment_has_no_secrets(executor):
  os.environ["OPENAI_API_KEY"] = SECRET
  pids = set()
  for worker in executor._workers:  # pylint: disable=protected-access
    pids |= process_tree(worker.proc.pid)
  assert len(pids) >= 2
  for pid in pids:
    with open(f"/proc/{pid}/environ", "rb") as f:
      environ = f.read()
    assert SECRET.encode() not in environ
    assert b"OPENAI_API_KEY" not in environ
    with open(f"/proc/{pid}/cmdline", "rb") as f:
      cmdline = f.read().split(b"\0")
    assert b"-I" in cmdline and b"-S" in cmdline


def test_isolation_level_is_detected_and_logged(executor):
  assert executor.isolation in ("full", "userns", "uid", "basic")
  if os.geteuid() == 0:
    assert executor.isolation == "full"
    for feature in ("pidns", "netns", "mountns", "uid_drop", "no_new_privs",
                    "private_tmp", "readonly_fs", "seccomp"):
      assert executor.features.get(feature) is True, feature


def test_gsmhard_reference_programs_reproduce_targets(executor, shared_data):
  path = shared_data / "pal" / "gsmhardv2.jsonl"
  rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  assert len(rows) == 1319
  results = executor.run([row["code"] for row in rows])
  failures = [(i, r) for i, (row, r) in enumerate(zip(rows, results))
              if not answers.answers_match(r.value, row["target"], "strict")]
  assert len(failures) <= 0.01 * len(rows), failures[:5]


def test_a_killed_worker_is_replaced_and_its_programs_run_again():
  # A worker reports a batch at its end: the programs it had are run again,
  # one at a time, and none is blamed for a kill that came from outside.
  sleeper = "import time\ndef solution():\n    time.sleep(3)\n    return 1"
  quick = "def solution():\n    return 5"
  with execution.Executor(workers=1, timeout_s=20.0, batch_size=4) as ex:
    victim = ex._workers[0].proc.pid  # pylint: disable=protected-access
    killer = threading.Timer(1.0, os.kill, (victim, signal.SIGKILL))
    killer.start()
    results = ex.run([sleeper, quick, quick, quick])
    killer.join()
    assert [(r.status, r.value) for r in results] == [("ok", 1)] + [("ok", 5)] * 3
    assert ex._workers[0].proc.pid != victim  # pylint: disable=protected-access
    assert ex.run([quick])[0].value == 5


def test_a_program_that_kills_its_worker_is_blamed_alone():
  if os.geteuid() != 0:
    pytest.skip("forcing the basic level needs root")
  # At the basic level a program runs as its worker's user and can kill it.
  killer = ("import collections\nos = collections._sys.modules['os']\n"
            "def solution():\n    os.kill(os.getppid(), 9)\n    return 1")
  quick = "def solution():\n    return 5"
  with execution.Executor(workers=1, timeout_s=5.0, batch_size=4, isolation="basic") as ex:
    results = ex.run([quick, killer, quick, quick, quick])
    assert [r.status for r in results] == ["ok", "crashed", "ok", "ok", "ok"]
    assert "worker died" in results[1].error
    assert [r.value for r in results[2:]] == [5, 5, 5]


@pytest.mark.parametrize("level", ["full", "uid", "basic"])
def test_nothing_outlives_a_killed_parent(tmp_path, repo_root, level):
  if level != "full" and os.geteuid() != 0:
    pytest.skip("forcing a level needs root")
  script = tmp_path / "parent.py"
  script.write_text(textwrap.dedent(f"""\
      import os, sys, time
      sys.path.insert(0, {str(repo_root)!r})
      from pad_jax.execution import Executor
      ex = Executor(workers=2, timeout_s=60, isolation={level!r})
      ex.start()
      print(ex._scratch, " ".join(str(w.proc.pid) for w in ex._workers), flush=True)
      daemon = '''
      import collections, time
      def solution():
          os = collections._sys.modules['os']
          if os.fork() == 0:
              os.setsid()
              if os.fork() == 0:
                  time.sleep(120)
          time.sleep(120)
      '''
      list(ex.imap([daemon, daemon]))
      """))
  proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                          text=True)
  scratch, *pids = proc.stdout.readline().split()
  worker_pids = [int(p) for p in pids]
  deadline = time.monotonic() + 20
  tree = set()
  while time.monotonic() < deadline:  # wait until the daemons exist
    tree = set().union(*(process_tree(p) for p in worker_pids))
    if len(tree) >= 2 * 2 + 2 * 3:  # launcher/guardian+zygote, program+daemon+grandchild
      break
    time.sleep(0.1)
  assert len(tree) >= 10, tree
  proc.kill()
  proc.wait()
  deadline = time.monotonic() + 10
  while time.monotonic() < deadline and any(_alive(p) for p in tree):
    time.sleep(0.1)
  assert not [p for p in tree if _alive(p)]
  shutil.rmtree(scratch, ignore_errors=True)  # the killed parent could not


def test_works_in_a_process_running_jax_threads():
  jax = pytest.importorskip("jax")
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  stop = threading.Event()

  def compute():
    x = jnp.ones((64, 64))
    while not stop.is_set():
      x = (x @ x) / 64.0
      x.block_until_ready()

  thread = threading.Thread(target=compute)
  thread.start()
  try:
    with execution.Executor(workers=2, timeout_s=5.0) as ex:
      results = ex.run([f"def solution():\n    return {i}" for i in range(50)])
  finally:
    stop.set()
    thread.join()
  assert [r.value for r in results] == list(range(50))
  assert jax.device_count() >= 1


@pytest.mark.parametrize("level", ["uid", "basic"])
def test_degraded_levels(level):
  if os.geteuid() != 0:
    pytest.skip("levels are forced below 'full' only when running as root")
  programs = [
      "def solution():\n    return 3",
      "def solution():\n    while True:\n        pass",
      "import collections\ndef solution():\n    return collections._sys.modules['os'].geteuid()",
      textwrap.dedent("""\
          import collections, time
          def solution():
              os = collections._sys.modules['os']
              if os.fork() == 0:
                  os.setsid()
                  time.sleep(60)
              return 1
          """),
  ]
  with execution.Executor(workers=1, timeout_s=3.0, isolation=level) as ex:
    assert ex.isolation == level
    assert ex.features["no_new_privs"] and not ex.features["pidns"]
    results = ex.run(programs)
    statuses = [r.status for r in results]
    assert statuses == ["ok", "timeout", "ok", "ok"]
    assert results[2].value >= 200000  # never root
    worker = ex._workers[0].proc.pid  # pylint: disable=protected-access
    time.sleep(0.2)
    assert len(process_tree(worker)) == 2  # guardian + zygote: the setsid daemon was killed


def test_bad_arguments():
  with pytest.raises(ValueError):
    execution.Executor(mode="eval")
  with pytest.raises(ValueError):
    execution.Executor(isolation="none")
  with pytest.raises(ValueError):
    execution.Executor(timeout_s=0)


def test_worker_scripts_use_only_the_standard_library():
  for name in ("worker.py", "zygote.py"):
    text = (pathlib.Path(execution.__file__).parent / name).read_text()
    assert "pad_jax" not in "\n".join(
        line for line in text.splitlines() if line.startswith(("import", "from")))


def test_seccomp_filter_denies_sockets_and_namespaces(repo_root):
  script = textwrap.dedent("""\
      import errno, os, socket, sys
      sys.path.insert(0, sys.argv[1])
      import worker
      worker.prctl(worker.PR_SET_NO_NEW_PRIVS, 1)
      worker.install_seccomp(worker.seccomp_filter())
      for call in (lambda: socket.socket(), lambda: socket.socketpair(),
                   lambda: worker.unshare(worker.CLONE_NEWUSER),
                   lambda: worker.mount("tmpfs", "/mnt", "tmpfs", 0)):
          try:
              call()
              print("allowed")
          except OSError as e:
              print(errno.errorcode[e.errno])
      pid = os.fork()  # plain fork (clone without CLONE_NEW*) still works
      if pid == 0:
          os._exit(7)
      print(os.waitpid(pid, 0)[1] >> 8)
      """)
  if os.uname().machine != "x86_64":
    pytest.skip("the seccomp filter is x86_64 only")
  proc = subprocess.run([sys.executable, "-I", "-S", "-c", script,
                         str(repo_root / "pad_jax" / "execution")],
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.split() == ["EPERM", "EPERM", "EPERM", "EPERM", "7"]


def test_userns_level_is_for_unprivileged_users():
  if os.geteuid() != 0:
    pytest.skip("as an unprivileged user 'userns' is the automatic level")
  with pytest.raises(ValueError, match="unprivileged"):
    execution.Executor(isolation="userns")


def test_a_worker_that_stops_answering_is_replaced():
  quick = "def solution():\n    return 5"
  with execution.Executor(workers=1, timeout_s=1.0, batch_size=3) as ex:
    ex.unresponsive_grace_s = 1.0
    tree = process_tree(ex._workers[0].proc.pid)  # pylint: disable=protected-access
    assert len(tree) == 2  # launcher + zygote
    for pid in tree:
      os.kill(pid, signal.SIGSTOP)  # frozen: alive, but silent
    results = ex.run([quick, quick, quick])
    # Replaced after the grace period; its programs ran again elsewhere.
    assert [r.value for r in results] == [5, 5, 5]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in tree):
      time.sleep(0.1)
    assert not any(_alive(p) for p in tree)


def test_user_namespace_setup_and_root_refusal(monkeypatch):
  """The unprivileged `userns` path's set-up, exercised as root.

  As root a user namespace can map only root itself, so programs must be
  refused; an unprivileged user maps its own uid and runs them.
  """
  if os.geteuid() != 0:
    pytest.skip("as an unprivileged user the default executor covers this path")
  ex = execution.Executor(workers=1, timeout_s=2.0)
  config = ex._config  # pylint: disable=protected-access
  monkeypatch.setattr(ex, "_config", lambda: {**config(), "userns": True, "uid_drop": False})
  with ex:
    assert ex.isolation == "userns"
    for feature in ("userns", "pidns", "netns", "mountns", "readonly_fs", "private_tmp"):
      assert ex.features[feature] is True, feature
    result, = ex.run(["def solution():\n    return 1"])
  assert result.status == "crashed" and "refusing to run a program as root" in result.error


def test_auto_falls_back_when_workers_cannot_start(monkeypatch, caplog, capfd):
  ex = execution.Executor(workers=1)
  config = ex._config  # pylint: disable=protected-access
  broken = {"full", "userns"}
  # A launcher that dies at start-up (bad answers path) for the top levels.
  monkeypatch.setattr(ex, "_config", lambda: {
      **config(), **({"answers_path": "/nonexistent"} if ex._level in broken else {})})
  with ex:
    assert ex.isolation in ("uid", "basic")
    assert ex.run(["def solution():\n    return 3"])[0].value == 3
  # One log line that names the reason; no traceback on the terminal.
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1, warnings
  assert "failed to start" in warnings[0]
  assert "FileNotFoundError" in warnings[0] and "/nonexistent" in warnings[0]
  assert "Traceback" not in capfd.readouterr().err


def test_a_level_that_cannot_start_names_the_reason(monkeypatch):
  level = "full" if os.geteuid() == 0 else "basic"
  ex = execution.Executor(workers=2, isolation=level)
  config = ex._config  # pylint: disable=protected-access
  monkeypatch.setattr(ex, "_config", lambda: {**config(), "answers_path": "/nonexistent"})
  with pytest.raises(execution.ExecutorError,
                     match=r"failed to start \(exit 1\): FileNotFoundError.*/nonexistent"):
    ex.start()
  assert not ex._workers  # pylint: disable=protected-access


_KEPT_VENV_SCRIPT = textwrap.dedent("""\
    import json, logging, sys
    from pad_jax.execution import executor
    top = sys.argv[1]
    assert executor.__file__.startswith(top + "/pkg/"), executor.__file__
    assert sys.prefix == top + "/venv", sys.prefix
    logging.basicConfig(level=logging.WARNING)
    OS = "import collections\\nos = collections._sys.modules['os']\\n"
    programs = [
        "def solution():\\n    return 6 * 7",
        f"def solution():\\n    return len(open('{top}/secret.txt').read())",
        OS + f"def solution():\\n    return len(os.listdir('{top}'))",
        OS + f"def solution():\\n    return os.path.isfile('{top}/venv/pyvenv.cfg')",
        f"def solution():\\n    open('{top}/venv/new', 'w')\\n    return 1",
    ]
    with executor.Executor(workers=1, timeout_s=5.0, isolation="full") as ex:
      results = ex.run(programs)
      print(json.dumps([ex.isolation, ex.features["private_tmp"],
                        ex.features["hidden_homes"],
                        [[r.status, r.value, r.error] for r in results]]))
    """)


@pytest.mark.parametrize("base", ["/tmp", "/var/tmp", "/dev/shm", "/root", "/home"])
def test_full_isolation_with_the_venv_and_package_under_a_private_mount(base, repo_root):
  """A venv and the package under /tmp (a clone there) or a home directory.

  The sandbox replaces these with empty tmpfs mounts: the interpreter, the
  venv and the package stay visible read-only; their neighbours stay hidden.
  """
  if os.geteuid() != 0:
    pytest.skip("the full isolation level needs root (see docs/security.md)")
  if not os.path.isdir(base) or not os.access(base, os.W_OK):
    pytest.skip(f"{base} is not a writable directory here")
  top = tempfile.mkdtemp(prefix="pad_kept_", dir=base)
  os.chmod(top, 0o755)  # readable by the programs' uids, were it not hidden
  try:
    package = pathlib.Path(top, "pkg", "pad_jax")
    (package / "execution").mkdir(parents=True)
    # What the executor needs, nothing more: the venv has no site-packages.
    for name in ("executor.py", "worker.py", "zygote.py"):
      shutil.copy(repo_root / "pad_jax" / "execution" / name, package / "execution")
    shutil.copy(repo_root / "pad_jax" / "answers.py", package)
    for directory in (package, package / "execution"):
      (directory / "__init__.py").write_text("")
    pathlib.Path(top, "secret.txt").write_text(SECRET)  # world-readable
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", f"{top}/venv"],
                   check=True, timeout=120)
    proc = subprocess.run([f"{top}/venv/bin/python", "-c", _KEPT_VENV_SCRIPT, top],
                          env={"PYTHONPATH": f"{top}/pkg"}, cwd="/",
                          capture_output=True, text=True, timeout=240)
  finally:
    shutil.rmtree(top, ignore_errors=True)
  assert proc.returncode == 0, proc.stderr
  assert proc.stderr == ""  # no fallback warning, no worker traceback
  isolation, private_tmp, hidden_homes, results = json.loads(proc.stdout)
  assert (isolation, private_tmp, hidden_homes) == ("full", True, True)
  assert [status for status, _, _ in results] == [
      "ok", "runtime_error", "ok", "ok", "runtime_error"]
  assert [value for _, value, _ in results[::2]] == [42, 2, None]  # 2: pkg, venv
  assert results[1][2].startswith("FileNotFoundError")  # the secret is hidden
  assert results[3][1] == 1.0  # the venv is there...
  assert "Read-only file system" in results[4][2]  # ...read-only


def test_an_abandoned_stream_does_not_leak_into_the_next(executor):
  slow = [f"import time\ndef solution():\n    time.sleep(0.05)\n    return {i}" for i in range(40)]
  stream = executor.imap(slow)
  assert next(stream).value == 0
  # Abandon it with programs in flight, then start another run.
  results = executor.run([f"def solution():\n    return {100 + i}" for i in range(10)])
  assert [r.value for r in results] == list(range(100, 110))
  with pytest.raises(RuntimeError, match="abandoned"):
    next(stream)


def test_a_worker_that_stops_reading_gets_its_batch_requeued():
  padding = "# " + "x" * 50_000 + "\n"  # 4 programs > a 64 KiB pipe
  programs = [padding + f"def solution():\n    return {i}" for i in range(4)]
  with execution.Executor(workers=1, timeout_s=2.0, batch_size=4) as ex:
    ex.unresponsive_grace_s = 1.0
    for pid in process_tree(ex._workers[0].proc.pid):  # pylint: disable=protected-access
      os.kill(pid, signal.SIGSTOP)
    results = ex.run(programs)
  assert [(r.status, r.value) for r in results] == [("ok", i) for i in range(4)]


def test_bench_bare_fork_pool_is_the_executor_without_isolation():
  """The ceiling `python -m pad_jax.bench execution` reports `vs_bare_fork` against."""
  from pad_jax.bench import execution as bench  # pylint: disable=g-import-not-at-top
  programs = [f"import math\ndef solution():\n    return math.sqrt({i * i})" for i in range(20)]
  result = bench.bench_bare_fork(programs, workers=2)
  assert result["values"] == [float(i) for i in range(20)]
  assert result["programs_per_s"] > 0 and result["cpu_ms_per_program"] > 0
  assert result["faults_per_program"] > 0  # each fork copies pages on write
