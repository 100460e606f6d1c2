"""Keeps TensorFlow off the GPUs and TPUs that JAX computes on, quietly.

pad-jax uses TensorFlow only on the host: seqio's tf.data input pipelines
and TensorBoard summaries. A full `tensorflow` wheel (not `tensorflow-cpu`)
that sees a GPU reserves most of its memory the first time TF touches a
device, and JAX then runs out of memory or falls back to slow allocation.
`t5x.train` hides GPUs from TF itself; `t5x.eval` and `t5x.infer` do not, so
`gin_configs/runs/pad_eval.gin` and `pad_infer.gin` import this module, and
the commands that import TensorFlow (`python -m pad_jax.infer`,
`pad_jax.pipeline`, `pad_jax.pipeline.report`, `pad_jax.preflight`,
`pad_jax.convert_hf`) import it before anything else imports TF and call
`hide_accelerators_from_tf()` first thing in `main`. Nothing here changes
what JAX sees (no `CUDA_VISIBLE_DEVICES`).

The setting only takes effect before TF initialises its runtime (its first
op or device query); later it is too late, and the call logs a warning
instead of failing, as the run can still work with `tensorflow-cpu` or when
TF got no accelerator memory yet.

On a machine without an NVIDIA driver, TF's CUDA stub says so on stderr
while `tensorflow` is imported (`I0000 ... cudart_stub.cc] Could not find
cuda drivers`) and when its runtime starts (`E0000 ... cuda_platform.cc]
failed call to cuInit: ... (303)`), an "error" about a GPU nobody asked
for. This module imports TF and starts its runtime with exactly those lines
filtered out of stderr, so an entry point that imports it before anything
else imports TensorFlow prints none of them. Where a driver is present
nothing is filtered: there a failing cuInit is a real error.
`TF_CPP_MIN_LOG_LEVEL` is no help: it is read once while TF is imported,
does not apply to the lines logged before that, and at 3 it would hide
every other TF error too.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator

from absl import logging

ACCELERATOR_TYPES = ("GPU", "TPU")
# The files that exist when an NVIDIA driver is loaded (the second inside
# containers that get the GPU as a device only).
NVIDIA_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl")
# TF's stderr lines that only say "no NVIDIA driver on this machine".
_NO_DRIVER_LINE = re.compile(
    rb"cudart_stub\.cc:\d+\] Could not find cuda drivers"
    rb"|cuda_platform\.cc:\d+\] failed call to cuInit")


def nvidia_driver_present() -> bool:
  """Whether this machine has an NVIDIA driver loaded (TF may see a GPU)."""
  return any(os.path.exists(path) for path in NVIDIA_DRIVER_FILES)


@contextlib.contextmanager
def no_driver_lines_filtered() -> Iterator[None]:
  """Filters TF's "no NVIDIA driver" lines out of stderr (file descriptor 2).

  Everything else written to stderr inside the block is written out, in
  order, when it ends. A no-op where an NVIDIA driver is present.
  """
  if nvidia_driver_present():
    yield
    return
  sys.stderr.flush()
  try:
    saved = os.dup(2)
  except OSError:  # no stderr at all: nothing to filter
    yield
    return
  try:
    with tempfile.TemporaryFile() as captured:
      os.dup2(captured.fileno(), 2)
      try:
        yield
      finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        captured.seek(0)
        kept = [line for line in captured.read().splitlines(keepends=True)
                if not _NO_DRIVER_LINE.search(line)]
        with os.fdopen(os.dup(2), "wb") as stderr:
          stderr.write(b"".join(kept))
  finally:
    os.close(saved)


with no_driver_lines_filtered():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top


def hide_accelerators_from_tf() -> bool:
  """Makes GPUs and TPUs invisible to TensorFlow (JAX keeps seeing them).

  Idempotent; cheap after the first call. The first call starts TF's
  runtime (a device query), without the "no NVIDIA driver" lines.

  Returns:
    True when TF now sees no GPU or TPU; False when TF had already
    initialised its runtime with an accelerator visible (logged as a
    warning: TF may hold accelerator memory JAX needs).
  """
  hidden = True
  for device_type in ACCELERATOR_TYPES:
    try:
      with no_driver_lines_filtered():
        tf.config.set_visible_devices([], device_type)
    except RuntimeError as e:  # "cannot be modified after being initialized"
      logging.warning(
          "TensorFlow already initialised its devices and still sees %s "
          "devices (%s); it may hold accelerator memory JAX needs. Call "
          "pad_jax.tf_devices.hide_accelerators_from_tf() before anything "
          "runs a TF op.", device_type, e)
      hidden = False
  return hidden


# The one import-time side effect of this module, on purpose: `t5x.eval` and
# `t5x.infer` run no pad-jax code before their input pipelines start TF, and
# a gin file can only reach them by importing a module (`import
# pad_jax.tf_devices` in runs/pad_eval.gin and runs/pad_infer.gin), which
# happens while the flags' gin files are parsed, before TF touches a device.
hide_accelerators_from_tf()
