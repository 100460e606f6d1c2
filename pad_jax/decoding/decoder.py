"""The batch decoder: a restored t5x checkpoint and its compiled decode step.

`Decoder` decodes batches of questions into programs, for either student
family, told apart by the model file's class:

* an encoder-decoder student (t5x `EncoderDecoderModel`) reads
  `<s> question </s>` (`pad_jax.student.vocab.format_input`);
* a decoder-only student (t5x `DecoderOnlyModel`) reads the prompt its
  program task trained on (`tasks.decoder_tasks.prompt_text`: the question
  and a newline, tokenized, no EOS), laid out as t5x's prefix-LM feature
  converter lays it out (`decoder_input_tokens` = BOS + prompt,
  `decoder_causal_attention` over BOS + prompt); t5x's `predict_batch`
  decodes after the prompt and strips it.

Both run the model class's `predict_batch_with_aux` with the same decode
functions (greedy, sampling, `beam_search`). `read_inputs` and
`read_done_ids` read the input and (for resuming) the output JSONL of
`pad_jax.decoding.files.decode_file`, the library behind
`python -m pad_jax.infer` (its output rows and resume rule are documented
there).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from t5x import decoding
from t5x import models
from t5x import partitioning
from t5x import utils

from pad_jax import checkpoints
from pad_jax import jsonl
from pad_jax.decoding import beam_search
from pad_jax.decoding import stepwise_decoder_only
from pad_jax.decoding.settings import DecodeSettings
from pad_jax.errors import ConfigError, DataError
from pad_jax.student import model_gin
from pad_jax.student import vocab as vocab_lib
from tasks import decoder_tasks


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


def _check_family(model: Any, options: DecodeSettings, gin_files: Sequence[str],
                  vocab_dir: Optional[str]) -> bool:
  """True for a decoder-only model; ConfigError for what it cannot decode."""
  if isinstance(model, models.DecoderOnlyModel):
    if options.decode == "stepwise_beam" and stepwise_decoder_only.is_prefix_lm(model):
      raise ConfigError(f"--decode=stepwise_beam: not supported for a prefix-LM "
                        f"student ({gin_files}: inputs_bidirectional_attention = True; "
                        "step-wise decoding feeds the prompt one id at a time)")
    if vocab_dir:
      raise ConfigError(f"--vocab_dir: a CodeT5 vocabulary, for encoder-decoder "
                        f"students; {gin_files}: MODEL is a {type(model).__name__} "
                        "(its model file names its vocabulary)")
    return True
  if not isinstance(model, models.EncoderDecoderModel):
    raise ConfigError(f"{gin_files}: MODEL is a {type(model).__name__}; pad_jax.infer "
                      "decodes EncoderDecoderModel and DecoderOnlyModel students")
  return False


class Decoder:
  """A restored t5x model and its compiled decode step.

  Args:
    checkpoint_dir: a `checkpoint_<step>` dir or a model dir (latest step).
    gin_files: the model gin file(s); empty: `model_gin_files(checkpoint)`.
    options: how to decode (validated here). `decode_batch` uses `decode`,
      `num_decodes`, `beam_size`, `alpha`, `temperature`, `top_k`, the
      lengths, `batch_size` and `seed`; the search around it
      (`pad_jax.decoding.files`) the rest.
    gin_search_paths: more gin search paths.
    gin_bindings: more gin bindings (`KEY=VALUE`).
    vocab_dir: vocabulary directory overriding the model file's.

  Attributes:
    decoder_only: the model is a t5x `DecoderOnlyModel` (else an
      `EncoderDecoderModel`).

  Raises:
    ConfigError: bad settings, a model of another class, or a setting its
      family cannot decode with (`vocab_dir` for a decoder-only student,
      `stepwise_beam` for a prefix-LM one).
    FileNotFoundError: a missing checkpoint or model file.
  """

  def __init__(self, checkpoint_dir: str, gin_files: Sequence[str] = (),
               options: DecodeSettings = DecodeSettings(),
               gin_search_paths: Optional[Sequence[str]] = None,
               gin_bindings: Sequence[str] = (),
               vocab_dir: Optional[str] = None):
    options.validate()
    self.options = options
    self.checkpoint = checkpoints.resolve_checkpoint(checkpoint_dir)
    gin_files = list(gin_files) or model_gin_files(self.checkpoint)
    search = [".", model_gin.GIN_CONFIGS_DIR] + list(gin_search_paths or [])
    # Decoding needs no optimizer (building a run's may count its data).
    try:
      model = model_gin.load_model_from_gin(gin_files, gin_bindings, search,
                                             with_optimizer=False)
    except ValueError as e:  # gin: a file that does not parse or has no MODEL
      lines = str(e).strip().splitlines() or [type(e).__name__]
      raise ConfigError(f"{gin_files}: {lines[0]}") from e
    self.decoder_only = _check_family(model, options, gin_files, vocab_dir)
    self.vocabulary = self._vocabulary(model, vocab_dir)
    self.model = self._decoding_model(model)
    self.params, self._predict = self._restore_and_compile()
    self._rng = jax.random.PRNGKey(options.seed)

  def _decoding_model(self, model):
    """The model file's class (t5x's or pad_jax.student.models') with our decode_fn."""
    if self.decoder_only:
      return type(model)(
          module=model.module, vocabulary=self.vocabulary, optimizer_def=None,
          decode_fn=self._decode_fn(),
          # No public accessor; predict's prefill reads it.
          inputs_bidirectional_attention=model._inputs_bidirectional_attention)  # pylint: disable=protected-access
    return type(model)(
        module=model.module, input_vocabulary=self.vocabulary,
        output_vocabulary=self.vocabulary, optimizer_def=None,
        decode_fn=self._decode_fn())

  @staticmethod
  def _vocabulary(model, vocab_dir):
    if not vocab_dir:
      return model.output_vocabulary
    vocabulary = vocab_lib.CodeT5Vocabulary(
        vocab_dir, extra_ids=model.output_vocabulary.extra_ids)
    if vocabulary.vocab_size != model.output_vocabulary.vocab_size:
      raise ConfigError(f"--vocab_dir: {vocab_dir} has {vocabulary.vocab_size} "
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
    if self.decoder_only:  # BOS + prompt + program in one sequence
      shapes = {"decoder_input_tokens":
                (o.batch_size, o.max_input_length + 1 + o.max_decode_length)}
    else:
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
    """The input ids of `question`, truncated to `max_input_length`.

    Encoder-decoder: `<s> question </s>` (EOS kept). Decoder-only: the ids of
    `decoder_tasks.prompt_text(question)`, no BOS or EOS, the head kept (as
    seqio trims the task's `inputs`).
    """
    limit = self.options.max_input_length
    if self.decoder_only:
      return list(self.vocabulary.encode(decoder_tasks.prompt_text(question)))[:limit]
    ids = vocab_lib.format_input(question, self.vocabulary)
    return ids if len(ids) <= limit else ids[:limit - 1] + [ids[-1]]

  def batch(self, questions: Sequence[str]) -> dict[str, np.ndarray]:
    """The model's input batch of `questions` (padded to `batch_size` rows).

    Decoder-only: t5x's prefix-LM layout. `decoder_input_tokens` is BOS (0)
    + the prompt, zeros after it for the program (room for
    `max_decode_length` tokens); `decoder_causal_attention` is 1 on BOS and
    the prompt (one more 1 than prompt tokens, as the feature converter
    marks it), which is how `predict_batch` finds where to decode from.
    """
    o = self.options
    encoded = [self.encode(q) for q in questions]
    longest = max(len(e) for e in encoded)
    if self.decoder_only:
      length = _bucket(longest + 1, o.max_input_length + 1) + o.max_decode_length
      tokens = np.zeros((o.batch_size, length), np.int32)
      causal = np.zeros((o.batch_size, length), np.int32)
      for i, ids in enumerate(encoded):
        tokens[i, 1:len(ids) + 1] = ids
        causal[i, :len(ids) + 1] = 1
      tokens[len(encoded):], causal[len(encoded):] = tokens[0], causal[0]
      return {"decoder_input_tokens": tokens, "decoder_causal_attention": causal}
    inputs = np.zeros((o.batch_size, _bucket(longest, o.max_input_length)), np.int32)
    for i, ids in enumerate(encoded):
      inputs[i, :len(ids)] = ids
    inputs[len(encoded):] = inputs[0]  # Static batch: pad with a real row.
    return {"encoder_input_tokens": inputs,
            "decoder_input_tokens": np.zeros((o.batch_size, o.max_decode_length),
                                             np.int32)}

  def decode_batch(self, questions: Sequence[str],
                   batch_number: int = 0) -> list[dict[str, Any]]:
    """Decodes up to `batch_size` questions into output fields."""
    o = self.options
    batch = self.batch(questions)
    rng = jax.random.fold_in(self._rng, batch_number)
    decodes, aux = self._predict(self.params, batch, rng)
    # [batch, width, length], worst first -> best first, K kept.
    # Decoder-only: the prompt is stripped; the room after it can exceed
    # max_decode_length for the shorter prompts of a batch (cut here).
    decodes = np.asarray(decodes)[:, ::-1][:, :o.num_decodes, :o.max_decode_length]
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
