r"""Training data of the step verifier: prefixes labelled by their completions.

  python -m pad_jax.stepwise.verifier_data --checkpoint_dir=STUDENT \
    --input=programs.jsonl --output=verifier.jsonl [--samples=4] \
    [--completions=4] [--temperature=1.0] [--max_decode_length=256]

For each question of `--input` (rows with `id`, `question`, `answer`, and
optionally a gold `program`, e.g. a program dataset):

  1. programs: the gold program (if given) and `--samples` programs sampled
     from the student;
  2. prefixes: every line prefix of those programs with at least one line of
     `solution()`'s body (duplicates once);
  3. labels: a prefix that fails in the sandbox is `wrong`; a complete one is
     labelled by its own answer; otherwise `--completions` completions are
     sampled from the student conditioned on the prefix (t5x decoding with
     the prefix as decoder prompt), executed, and the prefix is `correct` if
     at least one reaches the gold answer (Math-Shepherd's "hard" estimate),
     else `wrong`.

One output row per question (`tasks/verifier_tasks.py` describes it and
turns each prefix into one example). Rows are appended per batch of
questions; rerunning the same command skips the questions already written
(`pad_jax.jsonl`'s resume rule), so a kill -9 loses at most one batch.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Optional, Sequence

from absl import flags
import tqdm

from pad_jax import answers
from pad_jax import cli
from pad_jax.decoding import decoder as decoder_lib
from pad_jax.decoding.settings import DecodeSettings
from pad_jax import jsonl
from pad_jax.errors import ConfigError, DataError
from pad_jax.execution import flags as exec_flags
from pad_jax.execution import limits as limits_lib
from pad_jax.decoding import stepwise_proposer as proposer_lib
from pad_jax.decoding import stepwise_steps as steps_lib
from tasks import verifier_tasks

_CHUNK = 64  # decode rows per call


def read_questions(path: str) -> list[dict[str, Any]]:
  """Input rows (`id`, `question`, numeric `answer`, optional `program`)."""
  rows = decoder_lib.read_inputs(path)  # id and question checked
  for number, row in jsonl.iter_rows(path):
    if answers.parse_number(row.get("answer")) is None:
      raise DataError(path, number, "answer", "missing or not a number: "
                      f"{jsonl.short(row.get('answer'))}")
    if "program" in row and not isinstance(row["program"], str):
      raise DataError(path, number, "program", "must be a string")
  return rows


def line_prefixes(tokens: Sequence[int], newline: Any) -> list[tuple[int, ...]]:
  """The prefixes of `tokens` that end with a newline id."""
  return [tuple(tokens[:i + 1]) for i, t in enumerate(tokens) if newline[t]]


class Labeller:
  """Samples programs and completions with a student; labels prefixes."""

  def __init__(self, proposer: proposer_lib.Proposer, encode: Any,
               executor: Any, limits: limits_lib.ExecLimits, samples: int,
               completions: int):
    self.proposer, self.encode, self.executor = proposer, encode, executor
    self.limits, self.samples, self.completions = limits, samples, completions
    self.vocabulary = proposer.vocabulary

  def _complete(self, encoded, prefixes) -> list[proposer_lib.Proposal]:
    out = []
    for start in range(0, len(prefixes), _CHUNK):
      chunk = slice(start, start + _CHUNK)
      out += self.proposer.propose(encoded[chunk], prefixes[chunk],
                                   [False] * len(prefixes[chunk]), line=False)
    return out

  def _text(self, tokens: Sequence[int]) -> str:
    eos = self.vocabulary.eos_id
    return self.vocabulary.decode([t for t in tokens if t != eos])

  def label(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One output row per input row."""
    encoded = [self.encode(r["question"]) for r in rows]
    items = self._prefixes(rows, encoded)  # (row index, prefix ids, source)
    checks = [steps_lib.runnable(self._text(p)) for _, p, _ in items]
    own = self.executor.run([c.program for c in checks])
    # Prefixes that run (or are unfinished) and are not whole programs yet.
    todo = [k for k, (c, r) in enumerate(zip(checks, own))
            if c.kind != steps_lib.SYNTAX_ERROR and not c.complete
            and (c.kind == steps_lib.INCOMPLETE or r.ok)]
    reached = self._reached(rows, encoded, items, todo)
    out = [{**{f: r[f] for f in ("id", "question", "answer")}, "prefixes": []}
           for r in rows]
    for k, ((i, prefix, source), check, result) in enumerate(
        zip(items, checks, own)):
      if k in reached:
        entry = {"completions": self.completions, "reached": reached[k]}
        ok = reached[k] > 0
      else:  # failed, or a complete program judged by its own answer
        ok = bool(check.complete and result.ok and self.limits.matches(
            result.value, rows[i]["answer"]))
        entry = {"completions": 0, "reached": int(ok)}
      out[i]["prefixes"].append({
          "prefix": steps_lib.complete_lines(self._text(prefix)),
          "source": source,
          "label": verifier_tasks.CORRECT if ok else verifier_tasks.WRONG,
          **entry})
    return out

  def _prefixes(self, rows, encoded) -> list[tuple[int, tuple[int, ...], str]]:
    """The line prefixes of the gold and sampled programs (body lines only)."""
    sampled = self._complete([e for e in encoded for _ in range(self.samples)],
                             [()] * (len(rows) * self.samples))
    newline = proposer_lib.newline_ids(self.vocabulary)
    items = []
    for i, row in enumerate(rows):
      programs = [(tuple(self.vocabulary.encode(row["program"])), "gold")
                  ] if row.get("program") else []
      programs += [(p.tokens, "student")
                   for p in sampled[i * self.samples:(i + 1) * self.samples]]
      seen = set()
      for tokens, source in programs:
        for prefix in line_prefixes(tokens, newline)[1:]:  # after the header
          if prefix not in seen:
            seen.add(prefix)
            items.append((i, prefix, source))
    return items

  def _reached(self, rows, encoded, items, todo) -> dict[int, int]:
    """For each prefix in `todo`: how many sampled completions are right."""
    n = self.completions
    completions = self._complete(
        [encoded[items[k][0]] for k in todo for _ in range(n)],
        [items[k][1] for k in todo for _ in range(n)])
    texts = [self._text(items[todo[j // n]][1] + c.tokens)
             for j, c in enumerate(completions)]
    results = self.executor.run(
        steps_lib.runnable(t, finished=True).program for t in texts)
    reached = {k: 0 for k in todo}
    for j, result in enumerate(results):
      k = todo[j // n]
      gold = rows[items[k][0]]["answer"]
      reached[k] += bool(result.ok and self.limits.matches(result.value, gold))
    return reached


def build(checkpoint_dir: str, input_path: str, output_path: str, *,
          samples: int = 4, completions: int = 4, temperature: float = 1.0,
          top_k: int = 0, max_decode_length: int = 256,
          max_input_length: int = 512, batch_size: int = 8, seed: int = 0,
          gin_files: Sequence[str] = (),
          gin_search_paths: Optional[Sequence[str]] = None,
          vocab_dir: Optional[str] = None,
          limits: limits_lib.ExecLimits = limits_lib.DEFAULT,
          progress: bool = True) -> dict[str, Any]:
  """Writes one labelled row per question of `input_path` (resumable).

  The student is restored as `pad_jax.infer` restores it (`gin_files`,
  `gin_search_paths`, `vocab_dir`: its flags of the same names).

  Returns:
    `{"written", "skipped", "total", "prefixes", "correct", "seconds"}`.
  """
  if samples < 0 or completions < 1 or temperature <= 0:
    raise ConfigError("--samples must be >= 0, --completions >= 1 and "
                      "--temperature > 0")
  rows = read_questions(input_path)
  done = decoder_lib.read_done_ids(output_path)
  todo = [r for r in rows if r["id"] not in done]
  summary = {"written": len(todo), "skipped": len(rows) - len(todo),
             "total": len(rows), "prefixes": 0, "correct": 0}
  start = time.time()
  if todo:
    decoder = decoder_lib.Decoder(checkpoint_dir, gin_files, DecodeSettings(
        decode="sample", max_decode_length=max_decode_length,
        max_input_length=max_input_length, seed=seed),
        gin_search_paths=gin_search_paths, vocab_dir=vocab_dir)
    proposer = proposer_lib.Proposer(
        decoder.model, decoder.params, decoder.vocabulary,
        max_decode_length=max_decode_length, temperature=temperature,
        top_k=top_k, seed=seed)
    with limits.executor() as executor, jsonl.Appender(output_path) as out, \
        tqdm.tqdm(total=len(todo), unit="q", desc="verifier data",
                  file=sys.stderr, disable=not progress) as bar:
      labeller = Labeller(proposer, decoder.encode, executor, limits, samples,
                          completions)
      for begin in range(0, len(todo), batch_size):
        labelled = labeller.label(todo[begin:begin + batch_size])
        out.append_many(labelled)
        for row in labelled:
          summary["prefixes"] += len(row["prefixes"])
          summary["correct"] += sum(p["label"] == verifier_tasks.CORRECT
                                    for p in row["prefixes"])
        bar.update(len(labelled))
  return {**summary, "seconds": round(time.time() - start, 3)}


def main(argv: list[str]) -> int:
  cli.no_arguments(argv)
  cli.require(checkpoint_dir=_CHECKPOINT_DIR.value, input=_INPUT.value,
              output=_OUTPUT.value)
  try:
    summary = build(
        _CHECKPOINT_DIR.value, _INPUT.value, _OUTPUT.value,
        samples=_SAMPLES.value, completions=_COMPLETIONS.value,
        temperature=_TEMPERATURE.value, top_k=_TOP_K.value,
        max_decode_length=_MAX_DECODE_LENGTH.value,
        max_input_length=_MAX_INPUT_LENGTH.value,
        batch_size=_BATCH_SIZE.value, seed=_SEED.value,
        gin_files=_GIN_FILE.value, gin_search_paths=_GIN_SEARCH_PATHS.value,
        vocab_dir=_VOCAB_DIR.value, limits=exec_flags.limits())
  except (ValueError, FileNotFoundError) as e:
    raise ConfigError(cli.first_line(e)) from None
  print(json.dumps(summary))
  return 0


if __name__ == "__main__":
  _CHECKPOINT_DIR = flags.DEFINE_string(
      "checkpoint_dir", None, "The student: a t5x checkpoint_<step> directory "
      "or a model directory (its latest checkpoint).")
  _GIN_FILE = flags.DEFINE_multi_string(
      "gin_file", [], "The student's model gin file(s) (default: next to the "
      "checkpoint, as pad_jax.infer).")
  _GIN_SEARCH_PATHS = flags.DEFINE_list(
      "gin_search_paths", [], "More gin search paths ('.' and the project's "
      "gin_configs/ are always searched).")
  _VOCAB_DIR = flags.DEFINE_string(
      "vocab_dir", None, "Vocabulary directory overriding the model file's.")
  _INPUT = flags.DEFINE_string(
      "input", None, "JSONL questions: id, question, answer, optional gold "
      "program (a program dataset works).")
  _OUTPUT = flags.DEFINE_string("output", None, "Verifier data JSONL "
                                "(appended; resumable).")
  _SAMPLES = flags.DEFINE_integer("samples", 4, "Student programs sampled per "
                                  "question (their prefixes are labelled).")
  _COMPLETIONS = flags.DEFINE_integer(
      "completions", 4, "Completions sampled per prefix to label it.")
  _TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature.")
  _TOP_K = flags.DEFINE_integer("top_k", 0, "Top-k sampling (0: off).")
  _MAX_DECODE_LENGTH = flags.DEFINE_integer("max_decode_length", 256,
                                            "Most ids of a program.")
  _MAX_INPUT_LENGTH = flags.DEFINE_integer("max_input_length", 512,
                                           "Questions are truncated to this.")
  _BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Questions per batch.")
  _SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
  exec_flags.define()
  flags.adopt_module_key_flags(exec_flags)
  cli.run(main)
