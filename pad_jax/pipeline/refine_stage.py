"""The refine stage (PaD's stage III): refinement data, then the student trained further.

After `train`, the stage (1) writes the programs the student was trained on
(`refine/programs.jsonl`, the kept ones when over-length examples were
dropped) and those it refines from (`refine/sources.jsonl`: the first
`RefineConfig.limit` programs of each source); (2) runs
`python -m pad_jax.refine` on them: every mutation operator applied to every
program and executed in the sandbox, plus the trained student's own wrong
programs on those questions (`refine/data/refine.jsonl`, resumable);
(3) runs `python -m t5x.train` with the student's model gin files,
`RefineConfig.run_gin_files` (`runs/pad_refine.gin`: the refinement task
mixed with the original programs) and `refine/refine.gin` (the data and the
trained checkpoint as macros), which continues from the trained checkpoint.

Its summary has the train stage's keys (`checkpoint_dir`, `model_gin_files`,
...), so the decode stage decodes the refined student; decode with
`DecodeConfig.refine_rounds = R` to refine at inference too. A killed stage
resumes: `pad_jax.refine` skips finished programs and t5x restores the latest
checkpoint in `refine/model/`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Mapping

from pad_jax import atomic
from pad_jax import checkpoints
from pad_jax.data import programs as programs_lib
from pad_jax.execution import flags as exec_flags
from pad_jax.pipeline import child
from pad_jax.pipeline import run_dir as run_dir_lib
from pad_jax.pipeline import train_stage
from pad_jax.pipeline.configs import REPO_ROOT, RefineConfig, TrainConfig
from pad_jax.pipeline.stage import StageContext, StageError
from pad_jax.refine import data as refine_data

DATA_DIR = "data"


def trained_programs(train_dir: pathlib.Path, sources: Any = None) -> dict[str, list[Any]]:
  """`{source: records}` the train stage trained on (its `*.fit-*` rows when present)."""
  data_dir = train_dir / DATA_DIR
  out = {}
  for path in sorted(data_dir.glob("*.jsonl")):
    if ".fit-" in path.name:
      continue
    source = path.stem
    if sources is not None and source not in sources:
      continue
    fits = sorted(data_dir.glob(f"{source}.fit-*.jsonl"))
    out[source] = programs_lib.read_programs(fits[-1] if fits else path)
  if not out:
    raise StageError(f"{data_dir}: no training data of RefineConfig.sources={sources}")
  return out


def refine_gin(refine_rows: pathlib.Path, programs: pathlib.Path, checkpoint: str) -> str:
  """The macros `runs/pad_refine.gin` requires, as a gin file."""
  return "\n".join([
      "# Written by the pad-jax pipeline's refine stage: the data and the student.",
      f"REFINE_DATA = {json.dumps(str(refine_rows))}",
      f"PROGRAMS_DATA = {json.dumps(str(programs))}",
      f"INITIAL_CHECKPOINT_PATH = {json.dumps(str(checkpoint))}", ""])


def refine_data_command(cfg: RefineConfig, configs: Mapping[str, Any], sources_path: pathlib.Path,
                        out_dir: pathlib.Path, trained: Mapping[str, Any]) -> list[str]:
  """The `python -m pad_jax.refine` command line."""
  flags = [f"--programs={sources_path}", f"--out={out_dir}",
           f"--operators={','.join(cfg.operators)}", f"--per_operator={cfg.per_operator}",
           f"--seed={cfg.seed}", "--progress=false"]
  if cfg.student_failures:
    flags += [f"--checkpoint_dir={trained['checkpoint_dir']}",
              f"--batch_size={cfg.batch_size}", f"--max_decode_length={cfg.max_decode_length}"]
    flags += [f"--gin_file={f}" for f in trained["model_gin_files"]]
    if trained.get("vocab_dir"):
      flags.append(f"--vocab_dir={trained['vocab_dir']}")
  return child.python_command("pad_jax.refine", *flags, *exec_flags.as_flags(configs["limits"]))


def run(ctx: StageContext, configs: Mapping[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
  """Builds refinement data and trains the student further on it with t5x."""
  cfg: RefineConfig = configs["refine"]
  train_cfg: TrainConfig = configs["train"]
  trained = upstream["train"]["summary"]
  by_source = trained_programs(ctx.upstream("train"), cfg.sources)
  programs_path = ctx.path("programs.jsonl")
  programs_lib.write_programs(programs_path, [r for rows in by_source.values() for r in rows])
  sources_path = ctx.path("sources.jsonl")
  programs_lib.write_programs(sources_path, [r for rows in by_source.values()
                                             for r in rows[:cfg.limit]])

  data_dir = ctx.path(DATA_DIR)
  data_dir.mkdir(parents=True, exist_ok=True)
  bar = ctx.bar(desc_suffix="data", unit="row")
  child.run_child(refine_data_command(cfg, configs, sources_path, data_dir, trained),
                  ctx.path("refine_data.log"), env=child.child_env(extra=train_cfg.env),
                  cwd=str(REPO_ROOT),
                  poll=lambda: (setattr(bar, "n", child.count_lines(data_dir / refine_data.ROWS_FILE)),
                                bar.refresh()))
  bar.close()
  data_report = run_dir_lib.read_json(data_dir / refine_data.REPORT_FILE)

  atomic.write_text(ctx.path("refine.gin"),
                    refine_gin(data_dir / refine_data.ROWS_FILE, programs_path,
                               trained["checkpoint_dir"]))
  run_cfg = dataclasses.replace(train_cfg, run_gin_files=tuple(cfg.run_gin_files),
                                train_steps=cfg.train_steps, macros=cfg.macros)
  _, run_files = train_stage.snapshot_gin_files(run_cfg, ctx.path("gin"))
  model_dir = ctx.path("model")
  command = train_stage.t5x_train_command(run_cfg, model_dir, ctx.path("refine.gin"),
                                          list(trained["model_gin_files"]) + run_files)
  bar = ctx.bar(total=cfg.train_steps, unit="step", desc_suffix="train")
  child.run_child(command, ctx.path("t5x_train.log"), on_line=train_stage._Progress(bar),  # pylint: disable=protected-access
                  env=child.child_env(extra=train_cfg.env), cwd=str(REPO_ROOT))
  bar.close()

  curves = train_stage.read_curves(model_dir)
  atomic.write_json(ctx.path("curves.json"), curves)
  checkpoint = checkpoints.latest_checkpoint(model_dir)
  if checkpoint is None:
    raise StageError(f"t5x finished but wrote no checkpoint into {model_dir}")
  return {
      "refinement_rows": data_report.get("rows"), "data_report": data_report,
      "programs": {s: len(rows) for s, rows in by_source.items()},
      "checkpoint_dir": str(checkpoint), "step": checkpoints.checkpoint_step(checkpoint),
      "from_checkpoint": trained["checkpoint_dir"],
      "model_gin_files": list(trained["model_gin_files"]),
      "gin_search_paths": trained["gin_search_paths"], "vocab_dir": trained.get("vocab_dir"),
      "final_metrics": {tag: points[-1][1] for tag, points in curves.items() if points},
  }
