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
the read-only `cross_attention` variable collection. They are not put in the
decoding cache on purpose: beam search reorders its cache at every step
(`decoding.cache_gather_beams`, a one-hot contraction over every cache
array), and all beams of one input share the same keys/values, so carrying
them there would copy them per beam and per step for nothing. Instead they
keep their `[batch, ...]` shape and the decoder attends to them from all the
beams (or `num_decodes` samples) of an input at once
(`network.cached_attention`).

A module without `cross_attention_kv` (t5x's example network) decodes
exactly as with t5x's class.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, MutableMapping, Optional, Tuple

import jax
import jax.numpy as jnp
from t5x import decoding
from t5x import models

from pad_jax import network

PyTree = Any


class EncoderDecoderModel(models.EncoderDecoderModel):
  """t5x's encoder-decoder model; decoding projects encoder keys/values once."""

  def _cross_attention_kv(self, params: PyTree, encoded_inputs: jnp.ndarray,
                          encoder_input_tokens: jnp.ndarray) -> PyTree:
    """Every decoder layer's cross-attention keys and values, `[batch, ...]`."""
    _, variables = self.module.apply(
        {'params': params}, encoded_inputs, encoder_input_tokens,
        mutable=[network.CROSS_ATTENTION],
        method=self.module.cross_attention_kv)
    return variables[network.CROSS_ATTENTION]

  def _logits_from_slice_with_kv(
      self, decoding_state: decoding.DecodingState, params: PyTree,
      cross_kv: PyTree, encoded_inputs: jnp.ndarray, raw_inputs: jnp.ndarray,
      max_decode_length: int) -> Tuple[jnp.ndarray, Mapping[str, jnp.ndarray]]:
    """`_compute_logits_from_slice` reading the precomputed keys/values.

    `encoded_inputs` and `raw_inputs` keep the batch of the inputs (not
    expanded over beams): only their padding mask and shapes are used.
    """
    flat_ids = decoding_state.cur_token
    flat_logits, new_vars = self.module.apply(
        {'params': params, 'cache': decoding_state.cache,
         network.CROSS_ATTENTION: cross_kv},
        encoded_inputs, raw_inputs, flat_ids, flat_ids,
        enable_dropout=False, decode=True,
        max_decode_length=max_decode_length, mutable=['cache'],
        method=self.module.decode)
    return jnp.squeeze(flat_logits, axis=1), new_vars['cache']

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
