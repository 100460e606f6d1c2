"""The synthesize stage: the teacher's completions and the synthetic problems.

Outputs: `synthesize/teacher/` (the teacher's `completions.jsonl`,
`failed.jsonl`, `run.json`; `pad_jax.teacher.synthesize`) and
`synthesize/synthetic/{train,validation,test}.jsonl` (seeded synthetic
problems in the program-dataset format). Nothing is verified here: the verify
stage executes every source through one gate.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping

from pad_jax.data import programs
from pad_jax.data import synthetic
from pad_jax.pipeline import child
from pad_jax.pipeline.configs import SynthesizeConfig
from pad_jax.pipeline.stage import StageContext, StageError
from pad_jax.teacher import synthesize as synthesize_lib

SYNTHETIC = "synthetic"


def run(ctx: StageContext, configs: Mapping[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
  """Runs the teacher and writes the synthetic problems."""
  del upstream  # the first stage
  cfg: SynthesizeConfig = configs["synthesize"]
  summary: dict[str, Any] = {}
  if cfg.teacher != "none":
    summary["teacher"] = _run_teacher(ctx, cfg)
  sizes = {"train": cfg.synthetic_train, "validation": cfg.synthetic_validation,
           "test": cfg.synthetic_test}
  if any(sizes.values()):
    summary[SYNTHETIC] = _write_synthetic(ctx.path(SYNTHETIC), sizes, cfg)
  return summary


def _run_teacher(ctx: StageContext, cfg: SynthesizeConfig) -> dict[str, Any]:
  """Runs the teacher into `synthesize/teacher/` (completions only; verify checks them)."""
  out_dir = ctx.path("teacher")
  openai_config = cfg.openai_config() if cfg.teacher == "openai" else None
  result = synthesize_lib.synthesize(cfg.teacher, cfg.benchmark, cfg.split, out_dir,
                                     limit=cfg.limit, openai_config=openai_config, verify=False)
  if result.get("stopped"):
    raise StageError(f"the teacher stopped early ({result['stopped']}); raise the limit and "
                     "run again to resume")
  completions = child.count_lines(out_dir / "completions.jsonl")
  if not completions:
    raise StageError(f"the teacher wrote no completion into {out_dir}")
  return {"completions": completions,
          "failed": child.count_lines(out_dir / "failed.jsonl")}


def _write_synthetic(out_dir: pathlib.Path, sizes: Mapping[str, int],
                     cfg: SynthesizeConfig) -> dict[str, int]:
  counts = {}
  for split, n in sizes.items():
    if n:
      records = synthetic.generate(split, n, seed=cfg.synthetic_seed,
                                   templates=cfg.synthetic_templates)
      counts[split] = programs.write_programs(out_dir / f"{split}.jsonl", records)
  return counts
