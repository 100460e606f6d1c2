"""The batch decoder: questions -> programs with a t5x checkpoint.

The library behind `python -m pad_jax.infer` (its options, output rows and
resume rule are documented there).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from typing import Any, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from t5x import decoding
from t5x import models
from t5x import partitioning
from t5x import utils
import tqdm

from pad_jax.decoding import beam_search
from pad_jax import checkpoints
from pad_jax import jsonl
from pad_jax import tf_devices
from pad_jax.student import vocab as vocab_lib
from pad_jax.errors import DataError
from pad_jax.decoding import refine_loop
from pad_jax.execution import limits as exec_limits
from pad_jax.decoding import stepwise_proposer
from pad_jax.decoding import stepwise_scorers
from pad_jax.decoding import stepwise_search
from pad_jax.student import model_gin

DECODE_MODES = ("greedy", "beam", "sample", "stepwise_beam")


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  """How to decode.

  Attributes:
    decode: `greedy`, `beam` or `sample`.
    num_decodes: K decodes per question written to the output.
    beam_size: beam width (`beam`).
    alpha: beam-search length penalty (t5x's brevity penalty exponent).
    temperature: sampling temperature (`sample`).
    top_k: sample among the k most likely tokens (0: all).
    max_decode_length: the most tokens decoded per question.
    max_input_length: longer inputs are truncated (keeping the final EOS).
    batch_size: questions per batch.
    seed: sampling seed.
    step_candidates: K candidate next lines per partial program
      (`stepwise_beam`; docs/stepwise.md).
    step_verifier: a trained step verifier's checkpoint scoring partial
      programs (`stepwise_beam`; None: the log-probability scorer).
  """

  decode: str = "greedy"
  num_decodes: int = 1
  beam_size: int = 4
  alpha: float = 0.6
  temperature: float = 1.0
  top_k: int = 0
  max_decode_length: int = 256
  max_input_length: int = 512
  batch_size: int = 8
  seed: int = 0
  step_candidates: int = 4
  step_verifier: Optional[str] = None

  def validate(self) -> None:
    """Raises ValueError naming the option at fault."""
    if self.decode not in DECODE_MODES:
      raise ValueError(f"--decode: {self.decode!r} is not one of {DECODE_MODES}")
    for name in ("num_decodes", "beam_size", "max_decode_length",
                 "max_input_length", "batch_size", "step_candidates"):
      if getattr(self, name) < 1:
        raise ValueError(f"--{name}: must be >= 1, got {getattr(self, name)}")
    if self.max_input_length < 2:
      raise ValueError("--max_input_length: must be >= 2 (<s> and </s>)")
    if self.decode == "greedy" and self.num_decodes != 1:
      raise ValueError("--num_decodes: greedy decoding gives one decode; use "
                       "--decode=sample (self-consistency) or --decode=beam")
    if self.decode == "beam" and self.num_decodes > self.beam_size:
      raise ValueError(f"--num_decodes: {self.num_decodes} > --beam_size "
                       f"{self.beam_size}")
    if self.decode == "sample" and self.temperature <= 0:
      raise ValueError("--temperature: must be > 0 for sampling (use "
                       "--decode=greedy for argmax)")
    if self.top_k < 0:
      raise ValueError(f"--top_k: must be >= 0, got {self.top_k}")
    if self.decode == "stepwise_beam" and self.num_decodes != 1:
      raise ValueError("--num_decodes: stepwise_beam writes one program")
    if (self.decode == "stepwise_beam" and self.step_candidates > 1
        and self.temperature <= 0):
      raise ValueError("--temperature: must be > 0 to sample step candidates")

  @property
  def width(self) -> int:
    """Sequences decoded per question."""
    return self.beam_size if self.decode == "beam" else self.num_decodes


# ------------------------------------------------------------------------------
# Files.
# ------------------------------------------------------------------------------
def read_inputs(path: str) -> list[dict[str, Any]]:
  """Reads and validates the input JSONL (`id`, `question`).

  Raises:
    DataError: naming the file, line and field.
  """
  rows, seen = [], {}
  for number, row in jsonl.iter_rows(path):
    if "id" not in row:
      raise DataError(path, number, "id", "missing field")
    if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
      raise DataError(path, number, "id", "must be a string or an integer, "
                      f"got a JSON {jsonl.json_type(row['id'])}")
    if row["id"] in seen:
      raise DataError(path, number, "id", f"duplicate of line {seen[row['id']]}")
    jsonl.get_text(row, "question", path, number)
    seen[row["id"]] = number
    rows.append(row)
  return rows


def read_done_ids(path: str) -> set[Any]:
  """Ids already decoded in `path` (none if it does not exist yet).

  The resume rule of `pad_jax.jsonl`: a torn last line counts as not written
  (the `Appender` that writes the next rows cuts it off); a malformed line
  elsewhere, or a row without `id`, is an error. Nothing is changed here.

  Raises:
    DataError: naming the file and line.
  """
  done = set()
  for number, row in jsonl.iter_rows(path, resume=True, missing_ok=True):
    if "id" not in row:
      raise DataError(path, number, "id", "missing: not an infer output row; "
                      "remove the file or choose another --output")
    done.add(row["id"])
  return done


def model_gin_files(checkpoint: str) -> list[str]:
  """The gin file that defines the model of `checkpoint`.

  `model.gin` next to (or in) the checkpoint (`python -m pad_jax.convert_hf`
  writes it), else the `config.gin` that `t5x.train` writes into the model
  directory holding the checkpoint.

  Raises:
    FileNotFoundError: neither exists.
  """
  parent = os.path.dirname(os.path.normpath(checkpoint))
  for candidate in (os.path.join(parent, "model.gin"),
                    os.path.join(checkpoint, "model.gin"),
                    os.path.join(parent, "config.gin")):
    if os.path.isfile(candidate):
      return [candidate]
  raise FileNotFoundError(
      f"{checkpoint}: no model.gin next to the checkpoint and no t5x "
      f"config.gin in {parent}; pass the model file, e.g. "
      "--gin_file=models/codet5_small.gin")


# ------------------------------------------------------------------------------
# The decoder.
# ------------------------------------------------------------------------------
def _bucket(length: int, limit: int) -> int:
  """Pads input lengths to powers of two (>= 32): few compilations."""
  size = 32
  while size < length:
    size *= 2
  return min(size, limit)


def _until_eos(ids: np.ndarray, eos_id: int) -> list[int]:
  ids = [int(i) for i in ids]
  return ids[:ids.index(eos_id) + 1] if eos_id in ids else ids


class Decoder:
  """A restored t5x model and its compiled decode step."""

  def __init__(self, checkpoint_dir: str, gin_files: Sequence[str] = (),
               options: DecodeOptions = DecodeOptions(),
               gin_search_paths: Optional[Sequence[str]] = None,
               gin_bindings: Sequence[str] = (),
               vocab_dir: Optional[str] = None):
    options.validate()
    self.options = options
    self.checkpoint = checkpoints.resolve_checkpoint(checkpoint_dir)
    gin_files = list(gin_files) or model_gin_files(self.checkpoint)
    search = [".", model_gin.GIN_CONFIGS_DIR] + list(gin_search_paths or [])
    # Decoding needs no optimizer (building a run's may count its data).
    model = model_gin.load_model_from_gin(gin_files, gin_bindings, search,
                                           with_optimizer=False)
    if not isinstance(model, models.EncoderDecoderModel):
      raise ValueError(f"{gin_files}: MODEL is a {type(model).__name__}; "
                       "pad_jax.infer decodes EncoderDecoderModel students")
    self.vocabulary = self._vocabulary(model, vocab_dir)
    self.model = type(model)(  # The model file's class: pad_jax.student.models'.
        module=model.module, input_vocabulary=self.vocabulary,
        output_vocabulary=self.vocabulary, optimizer_def=None,
        decode_fn=self._decode_fn())
    self.params, self._predict = self._restore_and_compile()
    self._rng = jax.random.PRNGKey(options.seed)

  @staticmethod
  def _vocabulary(model, vocab_dir):
    if not vocab_dir:
      return model.output_vocabulary
    vocabulary = vocab_lib.CodeT5Vocabulary(
        vocab_dir, extra_ids=model.output_vocabulary.extra_ids)
    if vocabulary.vocab_size != model.output_vocabulary.vocab_size:
      raise ValueError(f"--vocab_dir: {vocab_dir} has {vocabulary.vocab_size} "
                       "ids, the model's vocabulary "
                       f"{model.output_vocabulary.vocab_size}")
    return vocabulary

  def _decode_fn(self):
    o = self.options
    if o.decode == "beam":
      return functools.partial(beam_search.beam_search, alpha=o.alpha)
    if o.decode == "greedy":  # t5x's argmax path: no top-k mask, no sampling
      return functools.partial(decoding.temperature_sample, temperature=0.0)
    return functools.partial(decoding.temperature_sample,
                             temperature=o.temperature, topk=o.top_k)

  def _restore_and_compile(self):
    """Restores params as t5x.infer does; partitions the decode step."""
    o = self.options
    shapes = {"encoder_input_tokens": (o.batch_size, o.max_input_length),
              "decoder_input_tokens": (o.batch_size, o.max_decode_length)}
    partitioner = partitioning.PjitPartitioner(num_partitions=1)
    initializer = utils.TrainStateInitializer(
        optimizer_def=None, init_fn=self.model.get_initial_variables,
        input_shapes=shapes, input_types={k: jnp.int32 for k in shapes},
        partitioner=partitioner)
    restore = utils.RestoreCheckpointConfig(path=self.checkpoint,
                                            mode="specific", strict=False)
    state, _ = utils.create_checkpoint_manager_and_restore(
        initializer, partitioner, restore, self.checkpoint, None,
        use_orbax=True)
    if state is None:
      raise FileNotFoundError(f"{self.checkpoint}: could not be restored")

    def step(params, batch, rng):
      return self.model.predict_batch_with_aux(
          params, batch, rng=rng if o.decode == "sample" else None,
          return_all_decodes=True, num_decodes=o.width)

    predict = partitioner.partition(
        step, in_axis_resources=(initializer.train_state_axes.params,
                                 partitioner.data_partition_spec, None),
        out_axis_resources=None)
    return state.params, predict

  def encode(self, question: str) -> list[int]:
    """`<s> question </s>` ids, truncated to `max_input_length` (EOS kept)."""
    ids = vocab_lib.format_input(question, self.vocabulary)
    limit = self.options.max_input_length
    return ids if len(ids) <= limit else ids[:limit - 1] + [ids[-1]]

  def decode_batch(self, questions: Sequence[str],
                   batch_number: int = 0) -> list[dict[str, Any]]:
    """Decodes up to `batch_size` questions into output fields."""
    o = self.options
    encoded = [self.encode(q) for q in questions]
    length = _bucket(max(len(e) for e in encoded), o.max_input_length)
    inputs = np.zeros((o.batch_size, length), np.int32)
    for i, ids in enumerate(encoded):
      inputs[i, :len(ids)] = ids
    inputs[len(encoded):] = inputs[0]  # Static batch: pad with a real row.
    batch = {"encoder_input_tokens": inputs,
             "decoder_input_tokens": np.zeros((o.batch_size, o.max_decode_length),
                                              np.int32)}
    rng = jax.random.fold_in(self._rng, batch_number)
    decodes, aux = self._predict(self.params, batch, rng)
    # [batch, width, length], worst first -> best first, K kept.
    decodes = np.asarray(decodes)[:, ::-1][:, :o.num_decodes]
    scores = np.asarray(aux["scores"])[:, ::-1][:, :o.num_decodes]
    eos = self.vocabulary.eos_id
    results = []
    for row, row_scores in zip(decodes[:len(questions)], scores):
      tokens = [_until_eos(ids, eos) for ids in row]
      texts = [self.vocabulary.decode(t) for t in tokens]
      fields = {"prediction": texts[0], "tokens": tokens[0],
                "score": float(row_scores[0])}
      if o.num_decodes > 1:
        fields.update(predictions=texts, predictions_tokens=tokens,
                      scores=[float(s) for s in row_scores])
      results.append(fields)
    return results


def _batches(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
  for start in range(0, len(rows), size):
    yield rows[start:start + size]


def decode_file(checkpoint_dir: str, gin_files: Sequence[str],
                input_path: str, output_path: str, *,
                decode: str = "greedy", num_decodes: int = 1,
                beam_size: int = 4, alpha: float = 0.6,
                temperature: float = 1.0, top_k: int = 0,
                max_decode_length: int = 256, max_input_length: int = 512,
                batch_size: int = 8, seed: int = 0,
                step_candidates: int = 4, step_verifier: Optional[str] = None,
                gin_search_paths: Optional[Sequence[str]] = None,
                gin_bindings: Sequence[str] = (),
                vocab_dir: Optional[str] = None, resume: bool = True,
                progress: bool = True, refine_rounds: int = 0) -> dict[str, Any]:
  """Decodes every question of `input_path` into `output_path` (JSONL).

  Args:
    checkpoint_dir: a `checkpoint_<step>` dir or a model dir (latest step).
    gin_files: the model gin file(s); empty: `model_gin_files(checkpoint)`.
    input_path: JSONL rows with `id` and `question`.
    output_path: JSONL output, appended per batch.
    decode, num_decodes, beam_size, alpha, temperature, top_k,
      max_decode_length, max_input_length, batch_size, seed,
      step_candidates, step_verifier: the `DecodeOptions`.
    gin_search_paths: more gin search paths.
    gin_bindings: more gin bindings (`KEY=VALUE`).
    vocab_dir: vocabulary directory overriding the model file's.
    resume: skip ids already in `output_path` (else it is overwritten).
    progress: show a tqdm progress bar on stderr.
    refine_rounds: R self-refinement rounds (`pad_jax.decoding.refine_loop`; 0: none).

  Returns:
    `{"decoded", "skipped", "total", "seconds", "checkpoint", "output"}`,
    plus `refine` (the refinement report) when `refine_rounds` > 0.

  Raises:
    DataError: a malformed input or output line (file:line: field).
    ValueError, FileNotFoundError: bad options, checkpoint or model file.
  """
  options = DecodeOptions(decode=decode, num_decodes=num_decodes,
                          beam_size=beam_size, alpha=alpha,
                          temperature=temperature, top_k=top_k,
                          max_decode_length=max_decode_length,
                          max_input_length=max_input_length,
                          batch_size=batch_size, seed=seed,
                          step_candidates=step_candidates,
                          step_verifier=step_verifier)
  options.validate()
  if refine_rounds < 0 or refine_rounds and (num_decodes != 1 or decode == "stepwise_beam"):
    raise ValueError("--refine_rounds: must be >= 0, and refines one greedy, beam or sample "
                     "decode (--num_decodes=1)")
  rows = read_inputs(input_path)
  if not resume and os.path.exists(output_path):
    os.remove(output_path)
  done = read_done_ids(output_path)
  todo = [(i, r) for i, r in enumerate(rows) if r["id"] not in done]
  summary = {"decoded": len(todo), "skipped": len(rows) - len(todo),
             "total": len(rows), "output": output_path}
  if not todo:
    return {**summary, "seconds": 0.0, "checkpoint": None}
  start = time.time()
  decoder = Decoder(checkpoint_dir, gin_files, options, gin_search_paths,
                    gin_bindings, vocab_dir)
  if refine_rounds:
    summary["refine"] = refine_loop.refine_into(decoder, todo, output_path, refine_rounds,
                                                progress=progress)
  else:
    _decode_into(decoder, todo, output_path, progress)
  return {**summary, "seconds": round(time.time() - start, 3),
          "checkpoint": decoder.checkpoint}


def _decode_into(decoder: Decoder, todo: Sequence[tuple[int, dict[str, Any]]],
                 output_path: str, progress: bool) -> None:
  """Decodes `(input index, row)` pairs, appending each batch durably."""
  if decoder.options.decode == "stepwise_beam":
    _stepwise_into(decoder, todo, output_path, progress)
    return
  size = decoder.options.batch_size
  with jsonl.Appender(output_path) as out, tqdm.tqdm(
      total=len(todo), unit="q", desc="decode", file=sys.stderr,
      disable=not progress) as bar:
    for batch in _batches(todo, size):
      results = decoder.decode_batch([r["question"] for _, r in batch],
                                     batch_number=batch[0][0] // size)
      out.append_many({**row, **fields}
                      for (_, row), fields in zip(batch, results))
      bar.update(len(batch))


def _stepwise_into(decoder: Decoder, todo: Sequence[tuple[int, dict[str, Any]]],
                   output_path: str, progress: bool) -> None:
  """`--decode=stepwise_beam`: `pad_jax.stepwise` over this student."""
  o = decoder.options
  scorer = stepwise_scorers.LogProbScorer()
  if o.step_verifier:
    verifier = Decoder(o.step_verifier, options=DecodeOptions(
        max_decode_length=8, max_input_length=o.max_input_length))
    scorer = stepwise_scorers.VerifierScorer(
        verifier.model, verifier.params, verifier.vocabulary,
        o.max_input_length)
  with exec_limits.DEFAULT.executor() as executor:
    search = stepwise_search.StepwiseSearch(
        stepwise_proposer.Proposer(
            decoder.model, decoder.params, decoder.vocabulary,
            max_decode_length=o.max_decode_length, temperature=o.temperature,
            top_k=o.top_k, seed=o.seed),
        executor, scorer, beam_size=o.beam_size,
        step_candidates=o.step_candidates)
    stepwise_search.decode_into(search, decoder.encode, todo, output_path,
                                o.batch_size, progress)
