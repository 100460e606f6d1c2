"""Keeps TensorFlow off the GPUs and TPUs that JAX computes on.

pad-jax uses TensorFlow only on the host: seqio's tf.data input pipelines
and TensorBoard summaries. A full `tensorflow` wheel (not `tensorflow-cpu`)
that sees a GPU reserves most of its memory the first time TF touches a
device, and JAX then runs out of memory or falls back to slow allocation.
`t5x.train` hides GPUs from TF itself; `t5x.eval` and `t5x.infer` do not, so
`gin_configs/runs/pad_eval.gin` and `pad_infer.gin` import this module, and
`python -m pad_jax.infer`, `pad_jax.pipeline` and `pad_jax.preflight` call
`hide_accelerators_from_tf()` first thing in `main`.

The setting only takes effect before TF initialises its runtime (its first
op or device query); later it is too late, and the call logs a warning
instead of failing, as the run can still work with `tensorflow-cpu` or when
TF got no accelerator memory yet.
"""

from __future__ import annotations

from absl import logging
import tensorflow as tf

ACCELERATOR_TYPES = ("GPU", "TPU")


def hide_accelerators_from_tf() -> bool:
  """Makes GPUs and TPUs invisible to TensorFlow (JAX keeps seeing them).

  Idempotent; cheap after the first call.

  Returns:
    True when TF now sees no GPU or TPU; False when TF had already
    initialised its runtime with an accelerator visible (logged as a
    warning: TF may hold accelerator memory JAX needs).
  """
  hidden = True
  for device_type in ACCELERATOR_TYPES:
    try:
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
