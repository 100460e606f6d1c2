"""Step-wise verified beam search (PaD stage IV) and its resumable file loop.

For a batch of questions, each holding up to B partial programs (beams):

  1. expand: every beam gets K candidate next lines (`Proposer`: the argmax
     line and K - 1 samples), all questions x beams x K in one decode call
     of a `stepwise_proposer.Session`: the questions are encoded once per
     batch and each candidate continues its beam's cache row;
  2. verify: each candidate prefix is turned into a runnable program
     (`steps.runnable`) and all of them are executed in one `Executor.run`
     call; a candidate whose prefix has a syntax error, raises, times out or
     assigns a non-finite or non-numeric value is pruned (counted by reason);
  3. score the survivors (`scorers`), keep the top B per question; a kept
     candidate whose last line is `solution()`'s `return` (or that ended with
     EOS) is complete and leaves the beam.

A question is done when no beam is left; its prediction is the best complete
program (else the best partial one, `complete: false`).
"""

from __future__ import annotations

import collections
import dataclasses
import sys
from typing import Any, Optional, Sequence

import tqdm

from pad_jax import jsonl
from pad_jax.execution import Executor
from pad_jax.decoding import stepwise_proposer as proposer_lib
from pad_jax.decoding import stepwise_scorers as scorers_lib
from pad_jax.decoding import stepwise_steps as steps_lib


@dataclasses.dataclass(frozen=True)
class Beam:
  """A partial program: its ids, text and scores."""
  tokens: tuple[int, ...] = ()
  text: str = ""
  logprob: float = 0.0
  score: float = 0.0
  complete: bool = False
  line: str = ""
  row: Optional[int] = None  # the decoder cache row holding its ids


@dataclasses.dataclass
class _Question:
  index: int
  question: str
  encoded: list[int]
  beams: list[Beam]
  finished: list[Beam] = dataclasses.field(default_factory=list)
  last: list[Beam] = dataclasses.field(default_factory=list)  # last beams
  log: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class StepwiseSearch:
  """Step-wise beam search over a `Proposer`, an executor and a scorer.

  Args:
    proposer: the student (`session(encoded, rows_per_question)`, whose
      `propose(questions, parents, prefixes, argmax)` decodes the lines).
    executor: a started-or-not sandbox `Executor`.
    scorer: a `scorers.Scorer`.
    beam_size: B, partial programs kept per question.
    step_candidates: K, candidate next lines per partial program.
    max_steps: the most lines per program.
  """

  def __init__(self, proposer: Any, executor: Executor,
               scorer: scorers_lib.Scorer, beam_size: int = 4,
               step_candidates: int = 4, max_steps: int = 64):
    self.proposer, self.executor, self.scorer = proposer, executor, scorer
    self.beam_size, self.step_candidates = beam_size, step_candidates
    self.max_steps = max_steps

  def search(self, questions: Sequence[str],
             encoded: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
    """Output fields (`prediction`, `tokens`, `score`, `complete`, `steps`)."""
    states = [_Question(i, q, list(e), [Beam()])
              for i, (q, e) in enumerate(zip(questions, encoded))]
    session = self.proposer.session(encoded,
                                    self.beam_size * self.step_candidates)
    for _ in range(self.max_steps):
      active = [s for s in states if s.beams]
      if not active:
        break
      self._step(session, active)
    return [self._result(s) for s in states]

  def _step(self, session: Any, active: Sequence[_Question]) -> None:
    rows = [(s, beam, k) for s in active for beam in s.beams
            for k in range(self.step_candidates)]
    proposals, cache_rows = session.propose(
        [s.index for s, _, _ in rows], [b.row for _, b, _ in rows],
        [b.tokens for _, b, _ in rows], [k == 0 for _, _, k in rows])
    vocabulary = self.proposer.vocabulary
    candidates, pruned = [], {id(s): collections.Counter() for s in active}
    seen = set()
    for (state, beam, _), proposal, row in zip(rows, proposals, cache_rows):
      tokens = beam.tokens + proposal.tokens
      if (id(state), tokens) in seen:
        pruned[id(state)]["duplicate"] += 1
        continue
      seen.add((id(state), tokens))
      if proposal.end == proposer_lib.LENGTH:
        pruned[id(state)]["length"] += 1
        continue
      text = vocabulary.decode([t for t in tokens
                                if t != vocabulary.eos_id])
      check = steps_lib.runnable(text, finished=proposal.end == proposer_lib.EOS)
      if check.kind == steps_lib.SYNTAX_ERROR:
        pruned[id(state)]["syntax_error"] += 1
        continue
      line = vocabulary.decode([t for t in proposal.tokens
                                if t != vocabulary.eos_id]).strip()
      new = Beam(tokens, text, beam.logprob + proposal.logprob,
                 complete=check.complete, line=line, row=row)
      candidates.append((state, new, check))
    results = self.executor.run(
        [c.program if c.kind == steps_lib.RUN else None
         for _, _, c in candidates])
    survivors = []
    for (state, new, check), result in zip(candidates, results):
      if check.kind == steps_lib.RUN and not result.ok:
        pruned[id(state)][result.status] += 1
      else:
        survivors.append((state, new))
    scores = self.scorer.score([scorers_lib.Candidate(
        s.question, b.text, len(b.tokens), b.logprob) for s, b in survivors])
    by_question = collections.defaultdict(list)
    for (state, new), score in zip(survivors, scores):
      by_question[id(state)].append(dataclasses.replace(new, score=score))
    for state in active:
      self._keep(state, by_question[id(state)], pruned[id(state)],
                 len([r for r in rows if r[0] is state]))

  def _keep(self, state: _Question, pool: list[Beam],
            pruned: collections.Counter, proposed: int) -> None:
    room = self.beam_size - len(state.finished)
    kept = sorted(pool, key=lambda b: -b.score)[:room]
    state.log.append({
        "candidates": proposed,
        "kept": [{"line": b.line, "score": round(b.score, 6),
                  "complete": b.complete} for b in kept],
        "pruned": dict(pruned)})
    state.finished.extend(b for b in kept if b.complete)
    state.beams = [b for b in kept if not b.complete]
    state.last = state.beams or state.last

  def _result(self, state: _Question) -> dict[str, Any]:
    pool = state.finished or state.beams or state.last
    best = max(pool, key=lambda b: b.score, default=Beam())
    return {"prediction": best.text, "tokens": list(best.tokens),
            "score": best.score if pool else None,
            "complete": bool(state.finished), "steps": state.log}


def decode_into(search: StepwiseSearch, encode: Any,
                todo: Sequence[tuple[int, dict[str, Any]]], output_path: str,
                batch_size: int, progress: bool) -> None:
  """Searches `(input index, row)` pairs, appending each batch durably.

  Args:
    search: the search.
    encode: `question -> encoder ids` (`pad_jax.infer.Decoder.encode`).
    todo: the rows still to do (resume: the caller drops finished ids).
    output_path: the JSONL output (appended per batch of questions).
    batch_size: questions searched together.
    progress: a tqdm bar on stderr.
  """
  with jsonl.Appender(output_path) as out, tqdm.tqdm(
      total=len(todo), unit="q", desc="stepwise", file=sys.stderr,
      disable=not progress) as bar:
    for start in range(0, len(todo), batch_size):
      batch = [row for _, row in todo[start:start + batch_size]]
      questions = [r["question"] for r in batch]
      results = search.search(questions, [encode(q) for q in questions])
      out.append_many({**row, **fields} for row, fields in zip(batch, results))
      bar.update(len(batch))
