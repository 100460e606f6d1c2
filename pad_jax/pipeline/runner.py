r"""The end-to-end PaD pipeline: teacher -> verify -> t5x train -> decode -> score -> report.

Usage (from the repository root):

  python -m pad_jax.pipeline --gin_file=gin_configs/runs/demo.gin \
      [--gin.RUN_DIR="'runs/my_run'"] [--gin.TrainConfig.train_steps=200] \
      [--rerun=train]

Stages, in order, each writing only into `RUN_DIR/<stage>/`:

  synthesize  the teacher (`gold` offline rationales, or `openai`) + synthetic problems
  verify      execute every program, keep those whose answer is right
  train       `python -m t5x.train` on the kept programs (tiny model from scratch,
              or a converted CodeT5 checkpoint)
  decode      `python -m pad_jax.infer` on the synthetic held-out split and the benchmarks
  score       execute the student's programs in the sandbox, compare with gold answers
  report      `RUN_DIR/report.json`, `RUN_DIR/report.md` and PNG plots

A stage is complete when its marker `RUN_DIR/<stage>/DONE.json` exists (written
last, atomically); complete stages are skipped, so a killed pipeline resumes
where it stopped: an interrupted stage continues from its partial outputs when
its config and inputs are those it started with (`STARTED.json`), else it
starts over in an emptied directory. Every marker records the exact runs of the
stages before it, so a stage that runs again makes every later stage run again.
Running a complete stage with a different config is an error (use `--rerun`,
which redoes a stage from scratch and everything after it, or another RUN_DIR)
so results never mix two configs silently.
"""

from __future__ import annotations

import dataclasses
import json
import logging as std_logging
import os
import sys
from typing import Any, Callable, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import gin

from pad_jax import child
from pad_jax.errors import DataError
from pad_jax import run_dir as run_dir_lib
from pad_jax import stages
from pad_jax import train_stage

STAGES = ("synthesize", "verify", "train", "decode", "score", "report")

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin files (e.g. gin_configs/runs/demo.gin).")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [], "Gin bindings; `--gin.KEY=VALUE` is the same as `--gin_bindings=KEY=VALUE`.")
_GIN_SEARCH_PATHS = flags.DEFINE_list(
    "gin_search_paths", [".", str(stages.REPO_ROOT / "gin_configs"), str(stages.REPO_ROOT)],
    "Where --gin_file paths and gin `include`s are looked up.")
_RERUN = flags.DEFINE_list(
    "rerun", [], f"Stages to run again even if complete (and every later one); any of {STAGES}.")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """The run.

  Attributes:
    run_dir: where every stage writes (macro RUN_DIR in the gin files).
    title: the report's title.
    stages: the stages to run, in order (a prefix of STAGES, e.g. to stop
      after training).
  """

  run_dir: str = "runs/demo"
  title: str = "pad-jax run"
  stages: Sequence[str] = STAGES


class ConfigMismatchError(stages.StageError):
  pass


def _stage_runners(config: "PipelineConfig") -> dict[str, tuple[Callable[[], Any], Callable[..., dict[str, Any]]]]:
  """stage -> (config factory, runner(ctx, config, markers))."""
  from pad_jax import report  # pylint: disable=import-outside-toplevel
  return {
      "synthesize": (stages.SynthesizeConfig, lambda ctx, c, m: stages.synthesize(ctx, c)),
      "verify": (stages.VerifyConfig, lambda ctx, c, m: stages.verify(ctx, c)),
      "train": (train_stage.TrainConfig, lambda ctx, c, m: train_stage.train(ctx, c)),
      "decode": (stages.DecodeConfig,
                 lambda ctx, c, m: stages.decode(ctx, c, m["train"]["summary"])),
      "score": (stages.ScoreConfig,
                lambda ctx, c, m: stages.score(ctx, c, m["decode"]["summary"]["examples"])),
      "report": (lambda: report.ReportConfig(title=config.title),
                 lambda ctx, c, m: report.write_report(ctx.run, c)),
  }


class _Bars:
  """Progress bars, one line per stage (more when a stage has several parts)."""

  def __init__(self, index: int, count: int, stage: str):
    self.prefix = f"[{index}/{count}] {stage}"

  def __call__(self, total: Optional[int] = None, unit: str = "it",
               desc_suffix: Optional[str] = None):
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    desc = self.prefix + (f" {desc_suffix}" if desc_suffix else "")
    return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True,
                mininterval=1.0, smoothing=0.1)


def run_pipeline(config: PipelineConfig, rerun: Sequence[str] = ()) -> dict[str, Any]:
  """Runs the configured stages; returns `{stage: marker}` (see `RunDir.mark_done`)."""
  unknown = [s for s in list(config.stages) + list(rerun) if s not in STAGES]
  if unknown:
    raise stages.StageError(f"unknown stage(s) {unknown}; expected some of {list(STAGES)}")
  run = run_dir_lib.RunDir(config.run_dir)
  run.root.mkdir(parents=True, exist_ok=True)
  runners = _stage_runners(config)
  markers: dict[str, Any] = {}
  statuses: dict[str, str] = {}
  for index, stage in enumerate(config.stages, 1):
    make_config, runner = runners[stage]
    cfg_dict = stages.config_dict(cfg := make_config())
    # What this stage's outputs depend on: the exact runs of the earlier stages.
    upstream = {s: m.get("id") for s, m in markers.items()}
    marker = run.marker(stage)
    if stage in rerun or (marker is not None and marker.get("upstream") != upstream):
      run.reset(stage)  # its inputs changed: old outputs (e.g. checkpoints) must not be resumed
      marker = None
    if marker is not None:
      if marker.get("config") != cfg_dict:
        raise ConfigMismatchError(_mismatch_message(run, stage, marker.get("config"), cfg_dict))
      markers[stage], statuses[stage] = marker, "skipped"
      print(f"[{index}/{len(config.stages)}] {stage}: complete, skipped "
            f"(finished {marker['finished_at']}, {marker['wall_s']:.1f}s)", file=sys.stderr)
      continue
    run.start(stage, config=cfg_dict, upstream=upstream)  # resumes only a same-input start
    ctx = stages.StageContext(run=run, stage_dir=run.stage_dir(stage),
                              bar=_Bars(index, len(config.stages), stage))
    watch = child.Stopwatch()
    summary = runner(ctx, cfg, markers)
    markers[stage] = run.mark_done(stage, wall_s=watch.seconds, config=cfg_dict,
                                   summary=summary, upstream=upstream)
    statuses[stage] = "ran"
  print(summary_table(run, markers, statuses))
  return markers


def _mismatch_message(run: run_dir_lib.RunDir, stage: str, old: Any, new: dict[str, Any]) -> str:
  old = old or {}
  diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
           if old.get(k) != new.get(k)]
  return (f"{run.marker_path(stage)}: stage {stage!r} was completed with another config "
          f"({'; '.join(diffs)}); pass --rerun={stage} to redo it, or use another RUN_DIR")


def _fmt(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.3f}"
  return str(value)


def summary_table(run: run_dir_lib.RunDir, markers: dict[str, Any], statuses: dict[str, str]) -> str:
  """The final terminal table: stages with wall times, then the headline numbers."""
  rows = [("stage", "status", "wall time", "result")]
  for stage, marker in markers.items():
    rows.append((stage, statuses.get(stage, ""), f"{marker['wall_s']:.1f}s",
                 _stage_result(stage, marker["summary"])))
  widths = [max(len(r[i]) for r in rows) for i in range(4)]
  lines = [f"\npad-jax pipeline: {run.root}"]
  for i, row in enumerate(rows):
    lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if i == 0:
      lines.append("  ".join("-" * w for w in widths))
  report_path = run.root / "report.json"
  if report_path.exists():
    report = run_dir_lib.read_json(report_path)
    lines.append("")
    for key in ("synthetic_accuracy", "synthetic_runnable_rate", "gsm8k_accuracy",
                "gsm8k_runnable_rate", "teacher_programs_kept", "total_wall_s"):
      if key in report:
        lines.append(f"  {key:<26} {_fmt(report[key])}")
    lines.append(f"\n  report: {run.root / 'report.md'}")
  return "\n".join(lines)


def _stage_result(stage: str, summary: dict[str, Any]) -> str:
  if stage == "verify":
    return f"kept {summary.get('kept')} {json.dumps(summary.get('kept_by_source', {}))}"
  if stage == "train":
    loss = summary.get("final_metrics", {}).get("train/loss_per_nonpadding_target_token")
    return f"step {summary.get('step')}" + (f", loss {loss:.3f}" if loss is not None else "")
  if stage == "decode":
    return ", ".join(f"{k} {v}" for k, v in summary.get("examples", {}).items())
  if stage == "score":
    return ", ".join(f"{k} acc {v['accuracy']:.3f} run {v['runnable_rate']:.3f}"
                     for k, v in summary.items())
  if stage == "synthesize":
    parts = []
    if "teacher" in summary:
      parts.append(f"teacher {summary['teacher'].get('completions')} completions")
    if "synthetic" in summary:
      parts.append(f"synthetic {summary['synthetic']}")
    return ", ".join(parts)
  return ""


def rewrite_gin_args(argv: Sequence[str]) -> list[str]:
  """`--gin.KEY=VALUE` -> `--gin_bindings=KEY=VALUE` (the t5x convention)."""
  out = []
  for arg in argv:
    if arg.startswith("--gin."):
      out.append("--gin_bindings=" + arg[len("--gin."):])
    else:
      out.append(arg)
  return out


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str],
              search_paths: Sequence[str]) -> None:
  """Parses gin files and bindings (imports the configurables first)."""
  from pad_jax import report  # pylint: disable=import-outside-toplevel,unused-import
  for path in search_paths:
    gin.add_config_file_search_path(path)
  # gin logs an error for every search path an include is not in, before it
  # finds it there or raises; keep the terminal for real errors.
  root = std_logging.getLogger()
  level = root.level
  root.setLevel(std_logging.CRITICAL)
  try:
    gin.parse_config_files_and_bindings(list(gin_files), list(bindings))
  finally:
    root.setLevel(level)


def main(argv: Sequence[str]) -> int:
  logging.set_verbosity(logging.WARNING)  # progress bars, not INFO logs, in the terminal
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    parse_gin(_GIN_FILE.value, _GIN_BINDINGS.value, _GIN_SEARCH_PATHS.value)
  except (ValueError, OSError, SyntaxError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    print(f"pad_jax.pipeline: bad gin config: {first}", file=sys.stderr)
    return 2
  try:
    run_pipeline(PipelineConfig(), rerun=_RERUN.value)
  except (stages.StageError, child.ChildError, DataError, run_dir_lib.RunDirError) as e:
    print(f"pad_jax.pipeline: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print("pad_jax.pipeline: interrupted; run the same command again to resume", file=sys.stderr)
    return 130
  return 0


def _run() -> None:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(lambda argv: sys.exit(main(argv)), argv=rewrite_gin_args(sys.argv))


if __name__ == "__main__":
  _run()
