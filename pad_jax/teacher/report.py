"""The teacher's verification report: what a teacher run produced and kept.

`write_verify_report` writes `report.json` and `report.png` into a teacher
output directory (the pipeline's run report is `pad_jax.pipeline.report`, not this).

report.json keys:
  teacher, model, benchmark, split, mode: provenance and the answer mode used;
  questions: questions in the run; completions: completions verified;
  failed_requests: requests that failed for good (and were not redone);
  extraction_failures: completions with no program in them;
  status_counts: executor status -> count (`extraction_failed` included);
  correct: {"pad": n, "strict": n} correct programs under each mode;
  wrong_answer: programs that ran but disagree with the gold answer (mode);
  pass_rate: correct[mode] / completions;
  pass_rate_by_variant: variant -> {completions, correct, pass_rate};
  kept, duplicates_dropped: rows in programs.jsonl, exact duplicates removed;
  questions_with_program, coverage: questions with >= 1 kept program, and
    that over `questions`;
  tokens: {prompt_tokens, completion_tokens, total_tokens}; cost_usd;
  verify_seconds: wall time of verification;
  target_budget: {max_target_tokens, over_budget, dropped, longest, vocab}:
    kept programs longer than the student's target budget (CodeT5 tokens
    including the EOS a seqio task appends, what t5x's truncation check
    counts); with `TargetBudget.drop` they are removed from programs.jsonl
    (`dropped`; `kept` is then the count after dropping).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
from typing import Any, Optional, Sequence

from pad_jax import atomic
from pad_jax.errors import ConfigError
from pad_jax.execution import verification
from pad_jax.teacher import cache as cache_lib

REPORT_FILE = "report.json"
PLOT_FILE = "report.png"
DEFAULT_MAX_TARGET_TOKENS = 256  # PaD's target length for CodeT5 students.


@dataclasses.dataclass(frozen=True)
class TargetBudget:
  """The target budget of the student the programs are for.

  Attributes:
    max_target_tokens: the student's target feature length (t5x's
      TASK_FEATURE_LENGTHS['targets']).
    drop: remove kept programs over the budget from programs.jsonl.
    vocab_dir: the student's vocabulary (None: CodeT5's).
  """
  max_target_tokens: int = DEFAULT_MAX_TARGET_TOKENS
  drop: bool = False
  vocab_dir: Optional[str] = None

  def __post_init__(self):
    if not isinstance(self.max_target_tokens, int) or self.max_target_tokens < 2:
      raise ConfigError(f"TargetBudget.max_target_tokens: must be an integer >= 2, got "
                        f"{self.max_target_tokens!r}")


def target_lengths(programs: Sequence[str], vocab_dir: Optional[str] = None) -> list[int]:
  """Target tokens of each program as a seqio task makes them (ids + EOS)."""
  # Deferred on purpose: pad_jax.student.vocab pulls in TensorFlow and seqio (seconds),
  # which the rest of the teacher never needs.
  from pad_jax.student import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  vocabulary = vocab_lib.CodeT5Vocabulary(vocab_dir)
  return [len(ids) + 1 for ids in vocabulary.encode_batch(list(programs))] if programs else []


def apply_budget(records: Sequence[Any], budget: Optional[TargetBudget] = None
                 ) -> tuple[list[Any], dict[str, Any]]:
  """Counts (and with `budget.drop` removes) records whose program is over budget.

  Args:
    records: `ProgramRecord`s (anything with `.program`).
    budget: the student's budget (None: `TargetBudget()`, count only).

  Returns:
    (records to write, the report's `target_budget` entry).
  """
  budget = budget or TargetBudget()
  lengths = target_lengths([r.program for r in records], budget.vocab_dir)
  over = [n > budget.max_target_tokens for n in lengths]
  counts = {"max_target_tokens": budget.max_target_tokens, "over_budget": sum(over),
            "dropped": sum(over) if budget.drop else 0, "longest": max(lengths, default=0),
            "vocab": budget.vocab_dir or "codet5"}
  if budget.drop:
    records = [r for r, o in zip(records, over) if not o]
  return list(records), counts


def build_report(verdicts: Sequence[verification.Verdict], records, duplicates: int,
                 failed_rows: list[dict[str, Any]], manifest: dict[str, Any], mode: str,
                 seconds: float, target_budget: Optional[dict[str, Any]] = None
                 ) -> dict[str, Any]:
  """Assembles the report dict (see the module docstring).

  `target_budget` is `apply_budget`'s count (None: counted here against
  `TargetBudget()`, nothing dropped).
  """
  counts = verification.tally(verdicts, mode)
  by_variant = {variant: {"completions": n, "correct": right, "pass_rate": round(right / n, 4)}
                for variant, (n, right) in counts.by_variant.items()}
  question_ids = {v.row["id"] for v in verdicts} | {r.get("id") for r in failed_rows}
  questions = int(manifest.get("questions") or len(question_ids))
  with_program = len({r.id for r in records})
  rows = [v.row for v in verdicts]
  models = sorted({str(r.get("model")) for r in rows if r.get("model")})
  teachers = sorted({str(r.get("teacher")) for r in rows if r.get("teacher")})
  return {
      "teacher": manifest.get("teacher") or ",".join(teachers),
      "model": manifest.get("model") or ",".join(models),
      "benchmark": manifest.get("benchmark"),
      "split": manifest.get("split"),
      "mode": mode,
      "questions": questions,
      "completions": len(verdicts),
      "failed_requests": len(failed_rows),
      "failure_reasons": dict(collections.Counter(
          _reason_kind(r.get("error", "")) for r in failed_rows).most_common(10)),
      "extraction_failures": counts.status_counts.get(verification.EXTRACTION_FAILED, 0),
      "status_counts": dict(sorted(counts.status_counts.items())),
      "correct": counts.correct,
      "wrong_answer": counts.wrong_answer,
      "pass_rate": round(counts.correct[mode] / len(verdicts), 4) if verdicts else 0.0,
      "pass_rate_by_variant": dict(sorted(by_variant.items())),
      "kept": len(records),
      "duplicates_dropped": duplicates,
      "questions_with_program": with_program,
      "coverage": round(with_program / questions, 4) if questions else 0.0,
      "tokens": cache_lib.usage_totals(rows),
      "cost_usd": round(sum(float(r.get("cost_usd") or 0.0) for r in rows), 6),
      "verify_seconds": round(seconds, 3),
      "target_budget": target_budget or apply_budget(records)[1],
  }


def _reason_kind(error: str) -> str:
  return error.split(":", 1)[0][:60] if error else "unknown"


def write_verify_report(out_dir: os.PathLike | str, report: dict[str, Any]) -> None:
  """Writes the verification report: report.json (atomically) and report.png."""
  out_dir = pathlib.Path(out_dir)
  atomic.write_json(out_dir / REPORT_FILE, report)
  plot_report(report, out_dir / PLOT_FILE)


def plot_report(report: dict[str, Any], path: os.PathLike | str) -> None:
  """Two panels: outcome of every completion, pass rate per prompt variant."""
  # Deferred on purpose: matplotlib is heavy (~0.5 s) and only this plot needs it.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  outcomes = dict(report["status_counts"])
  ok = outcomes.pop("ok", 0)
  outcomes["correct"] = report["correct"][report["mode"]]
  outcomes["wrong_answer"] = ok - outcomes["correct"]
  if report["failed_requests"]:
    outcomes["no_completion"] = report["failed_requests"]
  names = sorted(outcomes, key=lambda k: -outcomes[k])
  variants = report["pass_rate_by_variant"]

  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  left.barh(names, [outcomes[n] for n in names],
            color=["tab:green" if n == "correct" else "tab:red" for n in names])
  left.invert_yaxis()
  left.set_xlabel("completions")
  left.set_title(f"Outcome of {report['completions']} completions")
  for i, name in enumerate(names):
    left.text(outcomes[name], i, f" {outcomes[name]}", va="center", fontsize=8)
  right.bar(list(variants), [v["pass_rate"] for v in variants.values()], color="tab:blue")
  right.set_ylim(0, 1)
  right.set_xlabel("prompt variant")
  right.set_ylabel(f"pass rate ({report['mode']} mode)")
  right.set_title(f"Kept {report['kept']} programs, coverage {report['coverage']:.1%}")
  fig.suptitle(f"teacher={report['teacher']} model={report['model']}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
