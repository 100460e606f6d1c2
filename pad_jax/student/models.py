"""t5x's `EncoderDecoderModel` decoding with encoder keys/values projected once.

t5x's model class runs the decoder one token at a time inside the decode
function's `lax.while_loop` (`decoding.temperature_sample` for greedy and
sampling, `decoding.beam_search`), and with t5x's network every step
re-projects the whole encoder output into keys and values in every decoder
layer: for CodeT5-small at input length 128 that is ~90% of a step's FLOPs.

`EncoderDecoderModel` here is the same model (same loss, scoring, parameter
tree, checkpoints; a subclass, STYLE rule 3) whose `predict_batch_with_aux`
projects those keys and values once per input before the loop
(`network.Transformer.cross_attention_kv`) and hands them to every step as
the read-only `cross_attention` variable collection (with a tied output
layer it also carries the embedding table transposed,
`attention.OUTPUT_KERNEL`, which the CPU kernel reads faster; on every host
alike, so the collection's structure never depends on the kernels). They
are not put in the decoding cache on purpose: beam search reorders its
cache at every step (`decoding.cache_gather_beams`, a one-hot contraction
over every cache array), and all beams of one input share the same
keys/values, so carrying them there would copy them per beam and per step
for nothing. Instead they keep their `[batch, ...]` shape and the decoder
attends to them from all the beams (or `num_decodes` samples) of an input
at once (`attention.cached_attention`).

A module without `cross_attention_kv` (t5x's example network) decodes
exactly as with t5x's class.

Training: `loss_fn` is t5x's loss (cross-entropy with z-loss, loss weights,
loss normalizing factor, t5x's metrics) with the output layer fused into it
(`fused_cross_entropy`): the network returns the decoder's final hidden
states and the logits over the 32,100-token vocabulary are computed,
normalised and differentiated 256 rows at a time. With t5x's loss the
logits, their one-hot targets, log-softmax and gradient were each
materialised for the whole batch (8 x 256 x 32100 f32 = 263 MB apiece).
Label smoothing, or a network without `output_layer`, takes t5x's loss.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, MutableMapping, Optional, Tuple

from clu import metrics as clu_metrics
import jax
from jax import lax
import jax.numpy as jnp
from t5x import decoding
from t5x import losses
from t5x import models

from pad_jax.student import attention

PyTree = Any

# Rows of the flattened `[batch * length]` targets whose logits one step of
# the fused loss holds at once: 256 x 32100 f32 logits are 33 MB, about the
# 32 MB L3 cache of the CPUs the benchmarks ran on.
LOSS_CHUNK_ROWS = 256


def _output_logits(hidden: jnp.ndarray, kernel: jnp.ndarray, vocab_axis: int,
                   divisor: float) -> jnp.ndarray:
  """`[n, d] -> [n, vocab]`, the network's output layer (`output_layer`)."""
  logits = lax.dot_general(hidden, kernel,
                           (((1,), (1 - vocab_axis,)), ((), ())))
  return logits / divisor


def _chunk_loss(hidden, kernel, targets, vocab_axis, divisor, z_loss):
  """t5x's cross-entropy of one chunk of rows (`losses.cross_entropy_with_logits`).

  Returns:
    (loss with z-loss, z-loss, 1.0 where argmax == target) per row, and
    `(exp_shifted, sum_exp, is_target, factor)`, from which the gradient
    of a row's loss with respect to its logits is
    `factor * exp_shifted / sum_exp - is_target`, as t5x's custom gradient
    (`losses._cross_entropy_with_logits_bwd`) computes it.
  """
  logits = _output_logits(hidden, kernel, vocab_axis, divisor)
  max_logit = logits.max(axis=-1, keepdims=True)
  shifted = logits - max_logit
  exp_shifted = jnp.exp(shifted)
  sum_exp = jnp.sum(exp_shifted, axis=-1, keepdims=True)
  is_target = (lax.broadcasted_iota(jnp.int32, logits.shape, 1) ==
               targets[:, None])
  # The label's log-probability read with a masked sum (no one-hot tensor).
  target_shifted = jnp.sum(jnp.where(is_target, shifted, 0.0), axis=-1)
  log_sum = jnp.log(sum_exp)[:, 0]
  log_z = log_sum + max_logit[:, 0]
  z = z_loss * lax.square(log_z)
  loss = -(target_shifted - log_sum) + z
  # `argmax == target` as the first index of the maximum: a plain min
  # reduction (XLA:CPU runs argmax's variadic reduction several times slower).
  first_max = jnp.min(
      jnp.where(logits == max_logit, lax.broadcasted_iota(
          jnp.int32, logits.shape, 1), logits.shape[1]), axis=-1)
  correct = first_max == targets
  return (loss, z, correct.astype(jnp.float32), exp_shifted, sum_exp,
          is_target, 1 + 2 * z_loss * log_z)


def _metrics(batch: Mapping[str, jnp.ndarray], weights: Optional[jnp.ndarray],
             loss: jnp.ndarray, z_loss: jnp.ndarray,
             correct: jnp.ndarray) -> models.MetricsMap:
  """t5x's `loss_fn` metrics (`models.compute_base_metrics`) without logits.

  The accuracy comes from `correct` (argmax == target, per token), masked
  by `weights` as `clu_metrics.Accuracy` masks; every other metric is
  t5x's (none of them reads the logits; a placeholder is passed).
  """
  targets = batch['decoder_target_tokens']
  segment_ids = {k[:-len('_segment_ids')]: v for k, v in batch.items()
                 if k.endswith('_segment_ids')}
  if not segment_ids:  # t5x's rule: then only the padding masks.
    segment_ids = {k: v != 0 for k, v in batch.items()
                   if k in ('encoder_input_tokens', 'decoder_target_tokens')}
  metrics = models.compute_base_metrics(
      logits=jnp.zeros(targets.shape + (1,), jnp.float32), targets=targets,
      mask=weights, loss=loss, z_loss=z_loss, segment_ids=segment_ids)
  accuracy = clu_metrics.Average.from_model_output(values=correct,
                                                   mask=weights)
  metrics['accuracy'] = clu_metrics.Accuracy(**vars(accuracy))
  return metrics


def _chunked(x: jnp.ndarray, rows: int) -> jnp.ndarray:
  """`[n, ...] -> [n / rows, rows, ...]`, zero-padded to whole chunks."""
  pad = -x.shape[0] % rows
  x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
  return x.reshape((-1, rows) + x.shape[1:])


def _fused_fwd_and_grads(hidden, kernel, targets, weights, vocab_axis,
                         divisor, z_loss, rows):
  """Loss sums, per-row losses and the loss's gradients, chunk by chunk.

  The gradients are those of `sum(weights * loss)` (t5x's weighted sum):
  the loss is linear in its cotangent, so they are computed here, where
  each chunk's logits are at hand, and the backward pass only scales them.
  """
  n = hidden.shape[0]

  def step(grad_kernel, xs):
    h, t, w = xs
    loss, z, correct, exp_shifted, sum_exp, is_target, factor = _chunk_loss(
        h, kernel, t, vocab_axis, divisor, z_loss)
    deriv = factor[:, None] * exp_shifted / sum_exp - is_target
    g_logits = w[:, None] * deriv / divisor
    g_hidden = lax.dot_general(g_logits, kernel,
                               (((1,), (vocab_axis,)), ((), ())))
    if vocab_axis == 0:
      g_kernel = lax.dot_general(g_logits, h, (((0,), (0,)), ((), ())))
    else:
      g_kernel = lax.dot_general(h, g_logits, (((0,), (0,)), ((), ())))
    return grad_kernel + g_kernel, (loss, z, correct, g_hidden)

  xs = (_chunked(hidden, rows), _chunked(targets, rows),
        _chunked(weights, rows))
  grad_kernel, (loss, z, correct, grad_hidden) = lax.scan(
      step, jnp.zeros_like(kernel), xs)
  loss, z, correct = (x.reshape(-1)[:n] for x in (loss, z, correct))
  grad_hidden = grad_hidden.reshape((-1, hidden.shape[1]))[:n]
  return loss, z, correct, grad_hidden, grad_kernel


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def fused_cross_entropy(hidden: jnp.ndarray, kernel: jnp.ndarray,
                        targets: jnp.ndarray, weights: jnp.ndarray,
                        vocab_axis: int, divisor: float, z_loss: float,
                        rows: int = LOSS_CHUNK_ROWS):
  """t5x's weighted cross-entropy of the output layer, never all logits at once.

  `losses.compute_weighted_cross_entropy(dot(hidden, kernel) / divisor,
  targets, weights, z_loss=z_loss)` (label smoothing 0, the loss
  normalizing factor folded into `weights`) with the logits computed
  `rows` rows at a time, their softmax and gradient consumed while the
  chunk is at hand: no `[n, vocab]` logits, one-hot targets,
  log-softmax or logits gradient in memory, and the same FLOPs (the
  gradients are computed in the forward pass, see
  `_fused_fwd_and_grads`).

  Args:
    hidden: `[n, emb_dim]` float32 inputs of the output layer.
    kernel: the output layer (`network.Transformer.output_layer`).
    targets: `[n]` int32 labels.
    weights: `[n]` float32 loss weights (0 for padding).
    vocab_axis: the kernel's vocabulary axis (0 or 1).
    divisor: the logits' divisor.
    z_loss: t5x's z-loss coefficient.
    rows: rows per chunk.

  Returns:
    (weighted loss sum incl. z-loss, weighted z-loss sum, `[n]` float32
    1.0 where the logits' argmax is the target); only the first is
    differentiated (t5x's gradient ignores the z-loss output too).
  """
  loss, z, correct, _, _ = _fused_fwd_and_grads(
      hidden, kernel, targets, weights, vocab_axis, divisor, z_loss, rows)
  return jnp.sum(loss * weights), jnp.sum(z * weights), correct


def _fused_cross_entropy_fwd(hidden, kernel, targets, weights, vocab_axis,
                             divisor, z_loss, rows):
  loss, z, correct, grad_hidden, grad_kernel = _fused_fwd_and_grads(
      hidden, kernel, targets, weights, vocab_axis, divisor, z_loss, rows)
  outputs = (jnp.sum(loss * weights), jnp.sum(z * weights), correct)
  return outputs, (grad_hidden, grad_kernel, loss)


def _fused_cross_entropy_bwd(vocab_axis, divisor, z_loss, rows, residuals,
                             cotangents):
  del vocab_axis, divisor, z_loss, rows
  grad_hidden, grad_kernel, loss = residuals
  g = cotangents[0]
  return g * grad_hidden, g * grad_kernel, None, g * loss


fused_cross_entropy.defvjp(_fused_cross_entropy_fwd, _fused_cross_entropy_bwd)


class EncoderDecoderModel(models.EncoderDecoderModel):
  """t5x's encoder-decoder model; a fused loss, keys/values projected once.

  `loss_fn` is t5x's (same loss, z-loss, weights, loss normalizing factor
  and metrics) computed by `fused_cross_entropy` from the decoder's final
  hidden states, when the network has an `output_layer` and label
  smoothing is 0; otherwise it is t5x's own.
  """

  def loss_fn(
      self,
      params: PyTree,
      batch: Mapping[str, jnp.ndarray],
      dropout_rng: Optional[jax.Array],
  ) -> Tuple[jnp.ndarray, models.MetricsMap]:
    """t5x's `loss_fn`, the output layer and cross-entropy fused in chunks."""
    if self._label_smoothing or not hasattr(self.module, 'output_layer'):
      return super().loss_fn(params, batch, dropout_rng)
    loss_normalizing_factor, weights = (
        losses.get_loss_normalizing_factor_and_weights(
            self._loss_normalizing_factor, batch))
    targets = batch['decoder_target_tokens']
    rngs = {'dropout': dropout_rng} if dropout_rng is not None else None
    hidden = self.module.apply(
        {'params': params}, batch['encoder_input_tokens'],
        batch['decoder_input_tokens'], targets,
        encoder_segment_ids=batch.get('encoder_segment_ids', None),
        decoder_segment_ids=batch.get('decoder_segment_ids', None),
        encoder_positions=batch.get('encoder_positions', None),
        decoder_positions=batch.get('decoder_positions', None),
        decode=False, enable_dropout=rngs is not None, rngs=rngs,
        output_hidden=True)
    kernel, vocab_axis, divisor = self.module.apply(
        {'params': params}, method=self.module.output_layer)
    loss_weights = (jnp.ones(targets.shape, jnp.float32) if weights is None
                    else jnp.asarray(weights, jnp.float32))
    if loss_normalizing_factor is not None:
      loss_weights = loss_weights / loss_normalizing_factor
    loss, z_loss, correct = fused_cross_entropy(
        jnp.asarray(hidden, jnp.float32).reshape((-1, hidden.shape[-1])),
        kernel, targets.reshape(-1).astype(jnp.int32),
        loss_weights.reshape(-1), vocab_axis, divisor, self._z_loss,
        LOSS_CHUNK_ROWS)
    return loss, _metrics(batch, weights, loss, z_loss,
                          correct.reshape(targets.shape))

  def _cross_attention_kv(self, params: PyTree, encoded_inputs: jnp.ndarray,
                          encoder_input_tokens: jnp.ndarray) -> PyTree:
    """The `cross_attention` collection of a decoding call, `[batch, ...]`.

    Every decoder layer's cross-attention keys and values and, with a tied
    output layer, the embedding table transposed (`attention.OUTPUT_KERNEL`,
    `[emb_dim, vocab]`), made once here rather than at every step.
    """
    _, variables = self.module.apply(
        {'params': params}, encoded_inputs, encoder_input_tokens,
        mutable=[attention.CROSS_ATTENTION],
        method=self.module.cross_attention_kv)
    collection = dict(variables[attention.CROSS_ATTENTION])
    kernel, vocab_axis, _ = self.module.apply(
        {'params': params}, method=self.module.output_layer)
    if vocab_axis == 0:  # Tied: the `[vocab, emb_dim]` token embedding.
      collection[attention.OUTPUT_KERNEL] = kernel.T
    return collection

  def _logits_from_slice_with_kv(
      self, decoding_state: decoding.DecodingState, params: PyTree,
      cross_kv: PyTree, encoded_inputs: jnp.ndarray, raw_inputs: jnp.ndarray,
      max_decode_length: int) -> Tuple[jnp.ndarray, Mapping[str, jnp.ndarray]]:
    """`_compute_logits_from_slice` reading the precomputed keys/values.

    `encoded_inputs` and `raw_inputs` keep the batch of the inputs (not
    expanded over beams): only their padding mask and shapes are used.
    """
    return self.decode_ids(
        params, decoding_state.cache,
        {'encoded': encoded_inputs, 'raw_inputs': raw_inputs,
         'cross_kv': cross_kv}, decoding_state.cur_token, max_decode_length)

  # --------------------------------------------------------------------------
  # Incremental decoding driven from outside t5x's decode functions (the
  # step-wise line decoder, `pad_jax.decoding.stepwise_decoder`): encode once,
  # then feed one id per row per call, the cache carried by the caller.
  # --------------------------------------------------------------------------
  def decoding_context(self, params: PyTree, encoder_input_tokens: jnp.ndarray,
                       rows_per_input: int) -> PyTree:
    """What every decoding step reads about the inputs, computed once.

    Args:
      params: the parameters.
      encoder_input_tokens: `[batch, input_len]`.
      rows_per_input: decoder rows per input (consecutive rows share it).

    Returns:
      A pytree for `decode_ids`: the encoder output and inputs (`[batch,
      ...]`) with the `cross_attention` collection
      (`_cross_attention_kv`) when the network has one; else (t5x's
      network, which projects the encoder output at every step) the
      encoder output and inputs repeated to `[batch * rows_per_input, ...]`
      and no collection.
    """
    encoded = self.module.apply({'params': params}, encoder_input_tokens,
                                enable_dropout=False,
                                method=self.module.encode)
    if hasattr(self.module, 'cross_attention_kv'):
      return {'encoded': encoded, 'raw_inputs': encoder_input_tokens,
              'cross_kv': self._cross_attention_kv(params, encoded,
                                                   encoder_input_tokens)}
    return {'encoded': jnp.repeat(encoded, rows_per_input, axis=0),
            'raw_inputs': jnp.repeat(encoder_input_tokens, rows_per_input,
                                     axis=0),
            'cross_kv': None}

  def decoding_context_rows(self, context: PyTree, rows: jnp.ndarray,
                            total_rows: int) -> PyTree:
    """`decoding_context` for some decoder rows only, one row per input.

    Args:
      context: `decoding_context`'s, for `total_rows` decoder rows.
      rows: `[n]` int32 indices of the rows kept.
      total_rows: the decoder rows `context` was made for.

    Returns:
      The context of `n` decoder rows, row `j` reading what row `rows[j]`
      read (the tied output kernel, shared by all, is kept as is).
    """
    inputs = context['raw_inputs'].shape[0]
    index = rows // (total_rows // inputs)
    take = lambda x: jnp.take(x, index, axis=0)
    cross_kv = context['cross_kv']
    if cross_kv is not None:
      cross_kv = {name: value if name == attention.OUTPUT_KERNEL else
                  jax.tree_util.tree_map(take, value)
                  for name, value in cross_kv.items()}
    return {'encoded': take(context['encoded']),
            'raw_inputs': take(context['raw_inputs']), 'cross_kv': cross_kv}

  def decoding_cache(self, params: PyTree, rows: int, input_length: int,
                     max_decode_length: int) -> PyTree:
    """An empty (all-zero) self-attention cache of `rows` rows.

    The network's own cache-shaping call (`_compute_kv_cache`), evaluated
    for its shapes only: every leaf of a fresh cache is zero.
    """
    shapes = jax.eval_shape(
        lambda p: self._compute_kv_cache(
            p, None, jnp.ones((rows, input_length), jnp.int32),
            jnp.ones((rows, max_decode_length), jnp.int32))[0], params)
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                  shapes)

  def decode_ids(self, params: PyTree, cache: PyTree, context: PyTree,
                 ids: jnp.ndarray, max_decode_length: int
                 ) -> Tuple[jnp.ndarray, PyTree]:
    """One cached decoding step: `[rows, 1]` ids -> `[rows, vocab]` logits.

    The id of each row is written at the cache's `cache_index` (one index
    for all rows) and attends to the positions before it, as in t5x's
    `_compute_logits_from_slice`.

    Args:
      params: the parameters.
      cache: the `cache` collection (`decoding_cache`).
      context: `decoding_context`'s.
      ids: `[rows, 1]` int32.
      max_decode_length: the cache's length.

    Returns:
      (logits `[rows, vocab]`, the updated cache).
    """
    variables = {'params': params, 'cache': cache}
    if context['cross_kv'] is not None:
      variables[attention.CROSS_ATTENTION] = context['cross_kv']
    logits, new_vars = self.module.apply(
        variables, context['encoded'], context['raw_inputs'], ids, ids,
        enable_dropout=False, decode=True,
        max_decode_length=max_decode_length, mutable=['cache'],
        method=self.module.decode)
    return jnp.squeeze(logits, axis=1), new_vars['cache']

  def predict_batch_with_aux(
      self,
      params: PyTree,
      batch: Mapping[str, jnp.ndarray],
      rng: Optional[jax.Array] = None,
      decoder_params: Optional[MutableMapping[str, Any]] = None,
      return_all_decodes: Optional[bool] = None,
      num_decodes: Optional[int] = None,
      prompt_with_targets: bool = False,
  ) -> Tuple[jnp.ndarray, Mapping[str, jnp.ndarray]]:
    """t5x's `predict_batch_with_aux` (same arguments and results).

    The steps are t5x's: encode, shape the cache, run `self.decode_fn`,
    return the best (or all) decodes with their scores; only the step
    function differs (see the module docstring). Prompt prefilling is not
    used (the network's `decode` has no `prefill`), so a prompt given with
    `prompt_with_targets` is forced token by token, as t5x does then.
    """
    if not hasattr(self.module, 'cross_attention_kv'):
      return super().predict_batch_with_aux(
          params, batch, rng=rng, decoder_params=decoder_params,
          return_all_decodes=return_all_decodes, num_decodes=num_decodes,
          prompt_with_targets=prompt_with_targets)
    if return_all_decodes is None:
      return_all_decodes = self._default_decoder_params.return_all_decodes
    if num_decodes is None:
      num_decodes = self._default_decoder_params.num_decodes

    encoder_input_tokens = batch['encoder_input_tokens']
    decoder_input_tokens = batch['decoder_input_tokens']
    if prompt_with_targets:  # EOS stripped so decoding goes past the prompt.
      prompt = decoder_input_tokens * (
          decoder_input_tokens != self.output_vocabulary.eos_id)
    else:
      prompt = jnp.zeros_like(decoder_input_tokens)

    encoded_inputs = self.module.apply({'params': params},
                                       encoder_input_tokens,
                                       enable_dropout=False,
                                       method=self.module.encode)
    cross_kv = self._cross_attention_kv(params, encoded_inputs,
                                        encoder_input_tokens)
    cache, _ = self._compute_kv_cache(params, encoded_inputs,
                                      encoder_input_tokens, prompt,
                                      prefill_decoder_prompt=False)
    tokens_ids_to_logits = functools.partial(
        self._logits_from_slice_with_kv, params=params, cross_kv=cross_kv,
        encoded_inputs=encoded_inputs, raw_inputs=encoder_input_tokens,
        max_decode_length=decoder_input_tokens.shape[1])

    decoder_params = dict(decoder_params or {})
    if rng is not None:
      if decoder_params.get('decode_rng') is not None:
        raise ValueError(
            f'Got RNG both from the `rng` argument ({rng}) and '
            f"`decoder_params['decode_rng']` ({decoder_params['decode_rng']})."
            ' Please specify one or the other.')
      decoder_params['decode_rng'] = rng
    if 'eos_id' not in decoder_params:
      decoder_params['eos_id'] = self.output_vocabulary.eos_id or 1
    decodes, scores = self._decode_fn(
        inputs=prompt, cache=cache, tokens_to_logits=tokens_ids_to_logits,
        num_decodes=num_decodes, cache_offset=0, **decoder_params)
    if return_all_decodes:
      return decodes, {'scores': scores}
    return decodes[:, -1, :], {'scores': scores[:, -1]}
