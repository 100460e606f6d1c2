"""Shared pytest setup and helpers: CPU-only JAX, paths, running the commands.

Test files import the helpers directly (`from conftest import REPO, run_module`).
"""

import os
import pathlib
import subprocess
import sys

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO_ROOT = REPO = pathlib.Path(__file__).resolve().parents[1]
PY = sys.executable
SHARED_DATA = pathlib.Path(os.environ.get("PAD_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_decoder_student(tmp_path_factory):
  """(MODEL_DIR, env): models/tiny_decoder.gin trained 60 steps by `t5x.train`.

  `decoder_testlib.train`, once per session, for the decoder-only decoding
  and export tests (they only read it).
  """
  import decoder_testlib  # pylint: disable=import-outside-toplevel
  return decoder_testlib.train(tmp_path_factory.mktemp("tiny_decoder_student"),
                               "pad_tiny_decoder_student", decoder_testlib.STEPS,
                               max_input=decoder_testlib.MAX_INPUT)


def subprocess_env(**extra: str) -> dict:
  """The environment of a command under test: CPU JAX, quiet TF, no API key."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", **extra)
  env.pop("OPENAI_API_KEY", None)
  return env


def run_module(module: str, *args: str, timeout: float = 600, env=None, cwd=REPO,
               **kwargs) -> subprocess.CompletedProcess:
  """Runs `python -m <module> <args>` from the repository root; captures text output."""
  return subprocess.run([PY, "-m", module, *args], cwd=cwd, env=env or subprocess_env(),
                        capture_output=True, text=True, timeout=timeout, **kwargs)
