"""`decode_file`: a questions JSONL -> a predictions JSONL, resumable.

The library behind `python -m pad_jax.infer` (its output rows and resume rule
are documented there). One `Decoder` restores the checkpoint; the settings
choose plain batch decoding, self-refinement (`refine_loop`) or step-wise
verified search (`stepwise_search`).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterator, Optional, Sequence

import tqdm

from pad_jax import jsonl
from pad_jax.decoding import refine_loop
from pad_jax.decoding import stepwise_proposer
from pad_jax.decoding import stepwise_scorers
from pad_jax.decoding import stepwise_search
from pad_jax.decoding.decoder import Decoder
from pad_jax.decoding.decoder import read_done_ids
from pad_jax.decoding.decoder import read_inputs
from pad_jax.decoding.settings import DecodeSettings
from pad_jax.execution import limits as exec_limits

Todo = Sequence[tuple[int, dict[str, Any]]]  # (input index, input row)


def decode_file(settings: DecodeSettings, checkpoint_dir: str, input_path: str,
                output_path: str, *, gin_files: Sequence[str] = (),
                gin_search_paths: Optional[Sequence[str]] = None,
                gin_bindings: Sequence[str] = (), vocab_dir: Optional[str] = None,
                resume: bool = True, progress: bool = True) -> dict[str, Any]:
  """Decodes every question of `input_path` into `output_path` (JSONL).

  Args:
    settings: how to decode (validated here, before anything is read).
    checkpoint_dir: a `checkpoint_<step>` dir or a model dir (latest step).
    input_path: JSONL rows with `id` and `question`.
    output_path: JSONL output, appended per batch.
    gin_files: the model gin file(s); empty: `decoder.model_gin_files`.
    gin_search_paths: more gin search paths.
    gin_bindings: more gin bindings (`KEY=VALUE`).
    vocab_dir: vocabulary directory overriding the model file's.
    resume: skip ids already in `output_path` (else it is overwritten).
    progress: show a tqdm progress bar on stderr.

  Returns:
    `{"decoded", "skipped", "total", "seconds", "checkpoint", "output"}`,
    plus `refine` (the refinement report) when `settings.refine_rounds` > 0.

  Raises:
    ConfigError: bad settings, or a model file that cannot decode.
    DataError: a malformed input or output line (file:line: field).
    FileNotFoundError: a missing checkpoint or model file.
  """
  settings.validate()
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
  decoder = Decoder(checkpoint_dir, gin_files, settings, gin_search_paths,
                    gin_bindings, vocab_dir)
  if settings.refine_rounds:
    summary["refine"] = refine_loop.refine_into(
        decoder, todo, output_path, settings.refine_rounds, progress=progress)
  elif settings.decode == "stepwise_beam":
    _stepwise_into(decoder, todo, output_path, progress)
  else:
    _decode_into(decoder, todo, output_path, progress)
  return {**summary, "seconds": round(time.time() - start, 3),
          "checkpoint": decoder.checkpoint}


def _batches(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
  for start in range(0, len(rows), size):
    yield rows[start:start + size]


def _decode_into(decoder: Decoder, todo: Todo, output_path: str,
                 progress: bool) -> None:
  """Decodes `(input index, row)` pairs, appending each batch durably."""
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


def _stepwise_into(decoder: Decoder, todo: Todo, output_path: str,
                   progress: bool) -> None:
  """`decode='stepwise_beam'`: `stepwise_search` over this student."""
  o = decoder.options
  scorer = stepwise_scorers.LogProbScorer()
  if o.verifier_weight > 0:  # a step verifier, mixed in with weight w
    verifier = Decoder(o.step_verifier, options=DecodeSettings(
        max_decode_length=8, max_input_length=o.max_input_length))
    scorer = stepwise_scorers.CombinedScorer(stepwise_scorers.VerifierScorer(
        verifier.model, verifier.params, verifier.vocabulary,
        o.max_input_length), o.verifier_weight)
  if o.step_grounding:
    scorer = stepwise_scorers.GroundedScorer(scorer)
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
