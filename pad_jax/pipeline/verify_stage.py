"""The verify stage: execute every program, keep those whose answer is right.

The teacher's completions (`pad_jax.teacher.verify.verify_dir`: extraction,
execution, per-question deduplication) and the synthetic training problems
pass one gate: the same executor limits (`ExecLimits`, the same as `python -m
pad_jax.verify`) and the same verdicts and counts
(`pad_jax.execution.verification`).

Outputs: `verify/teacher/` (the teacher's `programs.jsonl`, `report.json`,
`report.png`), `verify/programs.jsonl` (every kept program, what training
reads) and `verify/report.json` (status counts and pass rates per source).
"""

from __future__ import annotations

import collections
from typing import Any, Mapping, Sequence

from pad_jax import atomic
from pad_jax.data import programs as programs_lib
from pad_jax.execution import verification
from pad_jax.execution.limits import ExecLimits
from pad_jax.pipeline import child
from pad_jax.pipeline.stage import StageContext, StageError
from pad_jax.pipeline.synthesize_stage import SYNTHETIC
from pad_jax.teacher import verify as verify_lib

_BATCH = 1024  # Programs per executor call (one progress-bar step).


def run(ctx: StageContext, configs: Mapping[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
  """Collects the verified programs of every source into `verify/programs.jsonl`."""
  del upstream
  limits: ExecLimits = configs["limits"]
  kept: list[programs_lib.ProgramRecord] = []
  report: dict[str, Any] = {"mode": limits.answer_mode, "sources": {}}
  teacher_dir = ctx.upstream("synthesize", "teacher")
  if teacher_dir.exists():
    records, report["sources"]["teacher"] = _teacher_programs(ctx, limits, teacher_dir)
    kept += records
  synthetic_train = ctx.upstream("synthesize", SYNTHETIC, "train.jsonl")
  if synthetic_train.exists():
    records, report["sources"][SYNTHETIC] = _verify_records(
        ctx, limits, programs_lib.read_programs(synthetic_train))
    kept += records
  if not kept:
    raise StageError(f"verification kept no program; see {ctx.path('report.json')}")
  programs_lib.write_programs(ctx.path("programs.jsonl"), kept)
  report["kept"] = len(kept)
  report["kept_by_source"] = dict(collections.Counter(r.teacher for r in kept))
  atomic.write_json(ctx.path("report.json"), report)
  return {"kept": len(kept), "kept_by_source": report["kept_by_source"],
          "pass_rate": {name: src.get("pass_rate") for name, src in report["sources"].items()}}


def _teacher_programs(ctx: StageContext, limits: ExecLimits, teacher_dir
                      ) -> tuple[list[programs_lib.ProgramRecord], dict[str, Any]]:
  """Executes the teacher's completions (`pad_jax.teacher.verify.verify_dir`)."""
  out_dir = ctx.path("teacher")
  bar = ctx.bar(total=child.count_lines(teacher_dir / "completions.jsonl"), unit="prog",
                desc_suffix="teacher")
  report = verify_lib.verify_dir(teacher_dir, limits, out_dir=out_dir)
  bar.update(bar.total - bar.n)
  bar.close()
  return programs_lib.read_programs(out_dir / "programs.jsonl"), report


def _verify_records(ctx: StageContext, limits: ExecLimits,
                    records: Sequence[programs_lib.ProgramRecord]
                    ) -> tuple[list[programs_lib.ProgramRecord], dict[str, Any]]:
  """Executes each record's program; keeps those whose value matches its answer."""
  bar = ctx.bar(total=len(records), unit="prog", desc_suffix=SYNTHETIC)
  verdicts = [verification.Verdict(row={"id": r.id, "answer": r.answer,
                                        "prompt_variant": r.prompt_variant},
                                   program=r.program, status="") for r in records]
  results: dict[str, Any] = {}
  with limits.executor() as executor:
    for start in range(0, len(verdicts), _BATCH):
      batch = verdicts[start:start + _BATCH]
      verification.execute(executor, batch, results)
      bar.update(len(batch))
  bar.close()
  mode = limits.answer_mode
  kept = [r for r, v in zip(records, verdicts) if v.match[mode]]
  counts = verification.tally(verdicts, mode)
  return kept, {
      "programs": len(records), "kept": len(kept),
      "pass_rate": len(kept) / max(1, len(records)),
      "status_counts": counts.outcome_counts(),
      "pass_rate_by_variant": {v: right / n for v, (n, right) in sorted(counts.by_variant.items())},
  }
