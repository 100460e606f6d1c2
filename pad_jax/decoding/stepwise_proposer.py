"""K candidate next lines per partial program, decoded by a t5x model.

Built on t5x's `EncoderDecoderModel.predict_batch_with_aux(...,
prompt_with_targets=True)`: the partial program's ids are the decoder prompt
(`decoder_input_tokens = [0, prefix...]`; t5x forces them, prefilling the
cache when the network supports it) and `decoding.temperature_sample`
continues it. The stop at the end of a line is a custom stop, not a cut in
text: a `state_callback_fn` marks a row ended as soon as it has *generated*
a newline token (any id whose text contains a newline; a byte-level BPE has
several, e.g. "\n" and "\n   "), so each row decodes only its own line, and
the candidate's ids are exactly what the model wrote.

Rows are (question, beam, candidate) triples flattened into one batch (the
question's encoder input repeated); each row has its own temperature: the
first candidate of every beam is the argmax line (temperature 0), the other
K - 1 are samples (`temperature`, `top_k`). With K = 1 every step is the
greedy line. Scores are the model's own log-probabilities of the new ids
(`rescale_log_probs=False`: at temperature 1, whatever the sampling
temperature).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

EOS, NEWLINE, LENGTH = "eos", "newline", "length"


@dataclasses.dataclass(frozen=True)
class Proposal:
  """One candidate continuation of a prefix.

  Attributes:
    tokens: the new ids (the line, ending with its newline id, or EOS).
    logprob: their summed log-probability under the model.
    end: how the line ended: `newline`, `eos`, or `length` (no end within
      the step or program budget).
  """
  tokens: tuple[int, ...]
  logprob: float
  end: str


def bucket(length: int, limit: int, smallest: int = 32) -> int:
  """Powers of two (>= `smallest`), capped at `limit`: few compilations."""
  size = smallest
  while size < length:
    size *= 2
  return min(size, limit)


@functools.lru_cache(maxsize=4)
def newline_ids(vocabulary: Any) -> np.ndarray:
  """A boolean mask over the vocabulary: ids whose text has a newline."""
  mask = np.zeros(vocabulary.vocab_size, bool)
  for i in range(vocabulary.vocab_size):
    try:
      mask[i] = "\n" in vocabulary.decode([i])
    except Exception:  # pylint: disable=broad-except  # special/extra ids
      pass
  return mask


class Proposer:
  """Decodes the next line of many partial programs at once.

  Args:
    model: a t5x `EncoderDecoderModel` whose decode function is
      `decoding.temperature_sample` (pad_jax.infer's non-beam decoders; the
      temperature, top-k and stop are passed per call as decoder params).
    params: its parameters.
    vocabulary: its output vocabulary.
    max_step_length: the most ids of one line.
    max_decode_length: the most ids of a whole program.
    temperature, top_k: how candidates 2..K are sampled.
    seed: the sampling seed.
  """

  def __init__(self, model: Any, params: Any, vocabulary: Any, *,
               max_step_length: int = 64, max_decode_length: int = 256,
               temperature: float = 1.0, top_k: int = 0, seed: int = 0):
    self.model, self.params, self.vocabulary = model, params, vocabulary
    self.max_step_length = max_step_length
    self.max_decode_length = max_decode_length
    self.temperature, self.top_k = temperature, top_k
    self._newline = jnp.asarray(newline_ids(vocabulary))
    self._rng = jax.random.PRNGKey(seed)
    self._calls = 0
    self._decode = {line: jax.jit(functools.partial(self._decode_rows,
                                                    line=line))
                    for line in (True, False)}

  def _decode_rows(self, params, encoder_inputs, decoder_inputs, temperatures,
                   rng, line):
    prompt_lengths = jnp.sum(decoder_inputs != 0, axis=1)
    newline = self._newline

    def stop_at_newline(state):
      # `cur_token` sits at position `cur_index`; positions 1..n are the
      # prompt (forced), so only a newline past them ends the row.
      token = state.cur_token[:, 0]
      generated = state.cur_index > prompt_lengths
      at_newline = newline[jnp.clip(token, 0, newline.shape[0] - 1)] & generated
      return state.replace(ended=state.ended | at_newline[:, None])

    decoder_params = {"temperature": temperatures, "topk": self.top_k,
                      "rescale_log_probs": False}
    if line:
      decoder_params["state_callback_fn"] = stop_at_newline
    decodes, aux = self.model.predict_batch_with_aux(
        params, {"encoder_input_tokens": encoder_inputs,
                 "decoder_input_tokens": decoder_inputs},
        rng=rng, return_all_decodes=True, num_decodes=1,
        prompt_with_targets=True, decoder_params=decoder_params)
    return decodes[:, 0], aux["scores"][:, 0]

  def propose(self, encoded: Sequence[Sequence[int]],
              prefixes: Sequence[Sequence[int]],
              argmax: Sequence[bool], line: bool = True) -> list[Proposal]:
    """The next line (or, `line=False`, the rest of the program) of each row.

    Args:
      encoded: each row's encoder input ids (`<s> question </s>`).
      prefixes: each row's partial program ids (no decoder start token).
      argmax: each row's candidate is the argmax line (else sampled).
      line: stop at the end of the line; else at EOS.

    Returns:
      One `Proposal` per row.
    """
    rows = len(prefixes)
    size = bucket(rows, 1 << 30, smallest=8)
    longest = max(len(p) for p in prefixes)
    budget = self.max_step_length if line else self.max_decode_length
    length = bucket(longest + budget + 1, self.max_decode_length)
    enc_length = bucket(max(len(e) for e in encoded), 1 << 30)
    encoder_inputs = np.zeros((size, enc_length), np.int32)
    decoder_inputs = np.zeros((size, length), np.int32)
    for i, (enc, prefix) in enumerate(zip(encoded, prefixes)):
      encoder_inputs[i, :len(enc)] = enc
      decoder_inputs[i, 1:len(prefix) + 1] = prefix
    encoder_inputs[rows:] = encoder_inputs[0]  # static batch: a real row
    decoder_inputs[rows:] = decoder_inputs[0]
    temperatures = np.full((size,), self.temperature, np.float32)
    temperatures[:rows][np.asarray(argmax, bool)] = 0.0
    rng = jax.random.fold_in(self._rng, self._calls)
    self._calls += 1
    decodes, scores = self._decode[line](self.params, encoder_inputs,
                                         decoder_inputs, temperatures, rng)
    decodes, scores = np.asarray(decodes), np.asarray(scores)
    proposals = [self._proposal(decodes[i, len(p):], float(scores[i]), line)
                 for i, p in enumerate(prefixes)]
    # An unfinished program at the decode limit has no room for another line
    # (and would not fit the next call's decoder inputs): it ends at LENGTH.
    return [dataclasses.replace(q, end=LENGTH)
            if q.end != EOS and len(p) + len(q.tokens) >= self.max_decode_length - 1
            else q for p, q in zip(prefixes, proposals)]

  def _proposal(self, new: np.ndarray, logprob: float, line: bool) -> Proposal:
    """The new ids up to the end of the line (or EOS)."""
    newline = np.asarray(self._newline)
    eos = self.vocabulary.eos_id
    budget = self.max_step_length if line else len(new)
    new = [int(t) for t in new]
    for j, token in enumerate(new[:budget]):
      if token in (eos, 0):  # 0: padding after the end
        return Proposal(tuple(new[:j + (token == eos)]), logprob, EOS)
      if line and newline[token]:
        return Proposal(tuple(new[:j + 1]), logprob, NEWLINE)
    return Proposal(tuple(new[:budget]), logprob, LENGTH)
