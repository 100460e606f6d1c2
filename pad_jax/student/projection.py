"""Projection kernels stored as t5x's `DenseGeneral` does, applied in 2-D.

Shared by the attention layer (`attention.py`) and the MLP (`network.py`).
Every product goes through `kernels.dense`, which picks the CPU decoding
kernel or `jnp.dot` itself.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

from flax import linen as nn
from flax.linen import partitioning as nn_partitioning
import jax.numpy as jnp
import numpy as np

from pad_jax.student import kernels

Array = jnp.ndarray


class Kernel(nn.Module):
  """A projection kernel stored exactly as t5x's `layers.DenseGeneral` does.

  Returning the kernel (rather than applying it) lets attention project
  only what it needs (cross-attention keys/values not at all when they
  were projected before the decoding loop).

  Attributes:
    in_shape: contracted input dims.
    out_shape: output dims.
    kernel_axes: logical axis names of the stored 2-D kernel.
    kernel_init: initializer of the stored 2-D kernel.
    dtype: dtype the kernel is cast to.
  """

  in_shape: Tuple[int, ...]
  out_shape: Tuple[int, ...]
  kernel_axes: Tuple[str, ...]
  kernel_init: Callable[..., Array]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self) -> Array:
    kernel = nn_partitioning.param_with_axes(
        'kernel', self.kernel_init,
        (int(np.prod(self.in_shape)), int(np.prod(self.out_shape))),
        jnp.float32, axes=self.kernel_axes)
    return jnp.reshape(jnp.asarray(kernel, self.dtype),
                       self.in_shape + self.out_shape)


def dense(x: Array, kernel: Array, dtype: Any, in_dims: int = 1,
          heads_major: bool = False) -> Array:
  """`[b, l, *in] x [*in, *out] -> [b, l, *out]` as one 2-D matrix product.

  The contraction of t5x's `DenseGeneral` (and of an einsum over the 3-D
  activations), flattened to `[b * l, in]` by free reshapes: then the
  gradient of the kernel is a plain 2-D product too. Contracting batch and
  length as two dimensions, XLA:CPU transposed the activations' gradient
  for it (a strided copy of every `[tokens, mlp]` gradient, ~12% of a
  training step's op time); the sums are the same. `heads_major`: the
  `[b, l, h, k]` result swapped to `[b, h, l, k]`.
  """
  lead = x.shape[:x.ndim - in_dims]
  size_in = int(np.prod(x.shape[x.ndim - in_dims:]))
  y = kernels.dense(jnp.asarray(x, dtype).reshape((-1, size_in)),
                    jnp.asarray(kernel).reshape((size_in, -1)))
  y = y.reshape(lead + kernel.shape[in_dims:])
  return jnp.swapaxes(y, 1, 2) if heads_major else y
