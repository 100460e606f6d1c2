"""TensorFlow is kept off accelerators by every entry point that imports it.

On CPU there is no GPU to hide, so the tests check what matters on a GPU box:
that `tf.config.set_visible_devices([], 'GPU'/'TPU')` runs before TF
initialises its runtime (after that, TF refuses the change), and that TF's
visible devices end up CPU only. Each check runs in a fresh subprocess whose
`set_visible_devices` records whether TF's runtime was still uninitialised.
"""

import json
import os
import subprocess
import sys
import textwrap

from absl import logging
import pytest
import tensorflow as tf

from conftest import REPO, subprocess_env
from pad_jax import tf_devices

# Records every set_visible_devices call, then runs ACTION; prints the calls
# and TF's visible device types as JSON on the last line.
_PROBE = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    from tensorflow.python.eager import context
    calls = []
    real = tf.config.set_visible_devices
    def recording(devices, device_type=None):
      calls.append([device_type, context.context()._context_handle is None])
      return real(devices, device_type)
    tf.config.set_visible_devices = recording
    status = None
    try:
    {action}
    except SystemExit as e:
      status = e.code
    print(json.dumps({{"calls": calls, "status": status, "visible": sorted(
        {{d.device_type for d in tf.config.get_visible_devices()}})}}))
    """)


def _probe(action: str) -> dict:
  code = _PROBE.format(action=textwrap.indent(textwrap.dedent(action), "  "))
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def _hidden_before_tf_started(report: dict) -> bool:
  """GPU and TPU were hidden while TF's runtime was still uninitialised."""
  return {"GPU", "TPU"} <= {kind for kind, before in report["calls"] if before}


@pytest.mark.parametrize("run_file,program", [
    ("runs/pad_eval.gin", "from t5x.eval import evaluate"),
    ("runs/pad_infer.gin", "from t5x.infer import infer"),
])
def test_t5x_eval_and_infer_run_files_hide_accelerators(run_file, program):
  # Parse the flags' gin files as t5x.eval / t5x.infer do (their `main`
  # parses gin, then builds the input pipeline: TF's first op).
  report = _probe(f"""
      {program}  # `import __main__ as ..._script` finds it here
      from t5x import gin_utils
      gin_utils.parse_gin_flags(
          ["gin_configs"], ["models/codet5_small.gin", "{run_file}"],
          ["CHECKPOINT_PATH='/nonexistent'", "EVAL_OUTPUT_DIR='/tmp/x'",
           "INFER_OUTPUT_DIR='/tmp/x'", "MIXTURE_OR_TASK_NAME='pad_eval_gsm8k'"])
      """)
  assert _hidden_before_tf_started(report), report
  assert report["visible"] == ["CPU"]


@pytest.mark.parametrize("module,argv", [
    ("pad_jax.infer", []),  # no --checkpoint_dir: exit 2 after start-up
    ("pad_jax.pipeline", ["--gin_file=/nonexistent.gin"]),
    ("pad_jax.preflight", ["--gin_file=/nonexistent.gin"]),
])
def test_entry_points_hide_accelerators_at_start_up(module, argv):
  report = _probe(f"""
      import runpy
      sys.argv = ["{module}", *{argv!r}]
      runpy.run_module("{module}", run_name="__main__", alter_sys=True)
      """)
  assert report["status"] == 2
  assert _hidden_before_tf_started(report), report
  assert report["visible"] == ["CPU"]


def test_hiding_after_tf_initialised_does_not_crash():
  report = _probe("""
      tf.constant(1.0) + 1.0  # TF's runtime is now initialised
      from pad_jax import tf_devices
      assert tf_devices.hide_accelerators_from_tf()  # nothing to hide on CPU
      """)
  assert report["status"] is None
  assert report["calls"] and not any(before for _, before in report["calls"])
  assert report["visible"] == ["CPU"]


def test_too_late_on_an_accelerator_box_warns_instead_of_failing(monkeypatch):
  def refuse(devices, device_type=None):
    raise RuntimeError("Visible devices cannot be modified after being initialized")
  monkeypatch.setattr(tf.config, "set_visible_devices", refuse)
  warnings = []
  monkeypatch.setattr(logging, "warning", lambda msg, *args: warnings.append(msg % args))
  assert tf_devices.hide_accelerators_from_tf() is False
  assert len(warnings) == 2 and "GPU" in warnings[0] and "TPU" in warnings[1]


# TF's lines about a missing NVIDIA driver (and any other CUDA start-up line).
_CUDA_NOISE = ("E0000", "cuInit", "cuda drivers", "cuda_platform", "cudart_stub")


def test_filter_drops_only_the_no_driver_lines(capfd, monkeypatch):
  monkeypatch.setattr(tf_devices, "nvidia_driver_present", lambda: False)
  with tf_devices.no_driver_lines_filtered():
    os.write(2, b"kept 1\n"
             b"I0000 00:00:1.2 5096 cudart_stub.cc:31] Could not find cuda drivers on your "
             b"machine, GPU will not be used.\n"
             b"E0000 00:00:1.3 5096 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA "
             b"error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
             b"E0000 00:00:1.4 5096 other.cc:1] a real error\n")
  assert capfd.readouterr().err == "kept 1\nE0000 00:00:1.4 5096 other.cc:1] a real error\n"
  monkeypatch.setattr(tf_devices, "nvidia_driver_present", lambda: True)
  with tf_devices.no_driver_lines_filtered():  # a driver: a failing cuInit is a real error
    os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit\n")
  assert "cuInit" in capfd.readouterr().err


def _cuda_noise(*command: str) -> list[str]:
  """The CUDA start-up lines `python COMMAND` writes to stderr, at TF's default log level."""
  env = subprocess_env()
  env.pop("TF_CPP_MIN_LOG_LEVEL")  # at 3 TF would hide every error, this one too
  result = subprocess.run([sys.executable, *command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode in (0, 1), result.stderr[-3000:]  # absl's --help exits 1
  return [line for line in result.stderr.splitlines()
          if any(word in line for word in _CUDA_NOISE)]


@pytest.fixture(scope="module")
def tf_alone_is_noisy():
  """Skips unless TF on its own prints the lines here (a CPU host, a full TF wheel)."""
  if tf_devices.nvidia_driver_present():
    pytest.skip("a GPU host: cuInit succeeds")
  if not _cuda_noise("-c", "import tensorflow as tf; tf.config.list_physical_devices()"):
    pytest.skip("this TensorFlow prints no CUDA lines on its own")


@pytest.mark.parametrize("command", [
    ["-c", "import pad_jax.tf_devices, tensorflow as tf; "
           "print(list(tf.data.Dataset.range(2).as_numpy_iterator()))"],
    ["-m", "pad_jax.pipeline", "--help"],
    ["-m", "pad_jax.infer", "--help"],
], ids=["import_then_tf_data", "pipeline_help", "infer_help"])
def test_no_cuda_lines_on_a_machine_without_a_gpu(tf_alone_is_noisy, command):
  """No `E0000 ... failed call to cuInit` (TF starting without a driver) from our commands."""
  del tf_alone_is_noisy
  assert not _cuda_noise(*command)
