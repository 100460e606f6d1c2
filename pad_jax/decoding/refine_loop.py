"""Self-refinement at inference: decode, execute, feed the feedback back, R rounds.

Round 0 decodes each question. A program that does not run, returns no
number or states a given the question does not contain
(`feedback.refinement_feedback`, the same function that chooses and
words the training rows of `pad_jax.refine`; the gold answer is never used to
decide), is given back to the student in the refinement format
(`refine_inputs.refinement_input`: question + its program + the interpreter's
feedback) and decoded again; up to R such rounds. Each output row keeps the
final `prediction` (the last round's program), `tokens` and `score`, and
every round in `rounds`: `{round, prediction, status, value, error,
feedback, correct}` (`correct` only where the input row has an `answer`).

Resume: every round of every question is appended durably to
`<output stem>.rounds.jsonl` as soon as its batch is executed; a rerun after
kill -9 rebuilds each question's state from it and continues with the
first unfinished round (no finished round is decoded again). A question's
output row is appended once its last round is done.

Report (`<output stem>.refine.json`, and the table in `.refine.md`): per
round, how many were attempted, how many became runnable (`fixed`), how
many are correct against gold and how many went from correct to wrong
(`broken`; zero while only failing programs are refined).
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Protocol, Sequence

import tqdm

from pad_jax import answers
from pad_jax import atomic
from pad_jax import jsonl
from pad_jax.execution import scoring
from pad_jax.execution.limits import ExecLimits
from pad_jax.execution import feedback as feedback_lib
from pad_jax.data import refine_inputs


class BatchDecoder(Protocol):
  """What the loop needs of a decoder (`pad_jax.infer.Decoder` is one)."""
  vocabulary: Any
  options: Any

  def decode_batch(self, questions: Sequence[str],
                   batch_number: int = 0) -> list[dict[str, Any]]:
    ...


def paths(output_path: str) -> dict[str, str]:
  """The loop's files next to `output_path`: rounds, report json, report table."""
  stem = output_path[:-len(".jsonl")] if output_path.endswith(".jsonl") else output_path
  return {"rounds": stem + ".rounds.jsonl", "report": stem + ".refine.json",
          "table": stem + ".refine.md"}


def read_rounds(path: str) -> dict[Any, list[dict[str, Any]]]:
  """id -> its finished rounds, in order (the resume rule of `pad_jax.jsonl`)."""
  state: dict[Any, list[dict[str, Any]]] = {}
  for _, row in jsonl.iter_rows(path, resume=True, missing_ok=True):
    rounds = state.setdefault(row["id"], [])
    if row["round"] == len(rounds):  # A round is recorded once; never twice.
      rounds.append(row)
  return state


def _failed(round_row: dict[str, Any]) -> bool:
  return bool(round_row["needs_refinement"])


def _input_text(row: dict[str, Any], previous: Optional[dict[str, Any]], vocabulary: Any,
                max_input_tokens: int) -> str:
  if previous is None:
    return row["question"]
  return refine_inputs.refinement_input(row["question"], previous["prediction"],
                                     previous["feedback"], vocabulary, max_input_tokens)


def _round_rows(batch: Sequence[dict[str, Any]], number: int, decoded: Sequence[dict[str, Any]],
                results: Sequence[Any], limits: ExecLimits) -> list[dict[str, Any]]:
  out = []
  for row, fields, result in zip(batch, decoded, results):
    # The trigger and the text are one call, the one pad_jax.refine trains on.
    text = feedback_lib.refinement_feedback(result, row["question"], fields["prediction"])
    entry = {"id": row["id"], "round": number, "prediction": fields["prediction"],
             "tokens": fields["tokens"], "score": fields["score"], "status": result.status,
             "value": result.value, "error": result.error,
             "needs_refinement": text is not None, "feedback": text}
    gold = answers.parse_number(row.get("answer"))
    if gold is not None:
      entry["correct"] = bool(result.ok and limits.matches(result.value, gold))
    out.append(entry)
  return out


def refine_into(decoder: BatchDecoder, todo: Sequence[tuple[int, dict[str, Any]]],
                output_path: str, rounds: int, limits: ExecLimits = ExecLimits(),
                max_input_tokens: Optional[int] = None,
                progress: bool = True) -> dict[str, Any]:
  """Decodes `(input index, row)` pairs with up to `rounds` refinement rounds.

  Args:
    decoder: the student (`decode_batch` over input texts).
    todo: the rows not yet in `output_path`.
    output_path: the output JSONL (final rows appended).
    rounds: R, the most refinement rounds after the first decode.
    limits: how predictions are executed (and compared where gold is known).
    max_input_tokens: the refinement input budget (default: the decoder's
      `max_input_length`).
    progress: tqdm bars on stderr, one per round.

  Returns:
    The report (also written to `<stem>.refine.json` / `.refine.md`).
  """
  files = paths(output_path)
  budget = max_input_tokens or decoder.options.max_input_length
  state = read_rounds(files["rounds"])
  rows = [row for _, row in todo]
  size = decoder.options.batch_size
  with jsonl.Appender(files["rounds"]) as rounds_out, limits.executor() as executor:
    for number in range(rounds + 1):
      pending = [r for r in rows if len(state.get(r["id"], [])) == number and
                 (number == 0 or _failed(state[r["id"]][-1]))]
      with tqdm.tqdm(total=len(pending), unit="q", desc=f"refine round {number}",
                     file=sys.stderr, disable=not progress or not pending) as bar:
        for start in range(0, len(pending), size):
          batch = pending[start:start + size]
          texts = [_input_text(r, (state.get(r["id"]) or [None])[-1], decoder.vocabulary,
                               budget) for r in batch]
          decoded = decoder.decode_batch(texts, batch_number=number * 1_000_003 + start // size)
          results = executor.run([scoring.program_to_run(d["prediction"], limits.exec_mode)
                                  for d in decoded])
          new = _round_rows(batch, number, decoded, results, limits)
          rounds_out.append_many(new)
          for entry in new:
            state.setdefault(entry["id"], []).append(entry)
          bar.update(len(batch))
  _write_final(rows, state, output_path)
  report = summarize(state, rounds)
  atomic.write_json(files["report"], report)
  atomic.write_text(files["table"], table(report) + "\n")
  return report


def _write_final(rows: Sequence[dict[str, Any]], state: dict[Any, list[dict[str, Any]]],
                 output_path: str) -> None:
  with jsonl.Appender(output_path) as out:
    for row in rows:
      history = state[row["id"]]
      last = history[-1]
      out.append({**row, "prediction": last["prediction"], "tokens": last["tokens"],
                  "score": last["score"],
                  "rounds": [{k: v for k, v in h.items() if k not in ("id", "tokens")}
                             for h in history]})


def summarize(state: dict[Any, list[dict[str, Any]]], rounds: int) -> dict[str, Any]:
  """Per round: attempted, fixed (now runnable), correct, broken; and the totals."""
  per_round = []
  for number in range(rounds + 1):
    attempted = fixed = correct = broken = scored = 0
    for history in state.values():
      if len(history) <= number:
        continue
      now = history[number]
      attempted += 1
      fixed += number > 0 and not now["needs_refinement"]
      if "correct" in now:
        scored += 1
        correct += now["correct"]
        if number > 0 and history[number - 1].get("correct") and not now["correct"]:
          broken += 1
    per_round.append({"round": number, "attempted": attempted,
                      "fixed": fixed if number else None,
                      "still_failing": sum(1 for h in state.values() if len(h) > number
                                           and h[number]["needs_refinement"]),
                      "correct": correct if scored else None,
                      "broken": broken if scored and number else None})
  finals = [h[-1] for h in state.values()]
  scored = [f for f in finals if "correct" in f]
  first_correct = [h[0] for h in state.values() if "correct" in h[0]]
  return {
      "questions": len(state), "rounds": rounds, "per_round": per_round,
      "runnable_first": sum(not h[0]["needs_refinement"] for h in state.values()),
      "runnable_final": sum(not f["needs_refinement"] for f in finals),
      "correct_first": sum(f["correct"] for f in first_correct) if first_correct else None,
      "correct_final": sum(f["correct"] for f in scored) if scored else None,
  }


def table(report: dict[str, Any]) -> str:
  """The report as a short Markdown table."""
  lines = ["| round | attempted | fixed (runnable) | still failing | correct | broken |",
           "|---:|---:|---:|---:|---:|---:|"]
  for r in report["per_round"]:
    cells = [r["round"], r["attempted"], r["fixed"], r["still_failing"], r["correct"],
             r["broken"]]
    lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
  lines.append(f"\n{report['questions']} questions: runnable {report['runnable_first']} -> "
               f"{report['runnable_final']}; correct {report['correct_first']} -> "
               f"{report['correct_final']} after up to {report['rounds']} refinement rounds.")
  return "\n".join(lines)
