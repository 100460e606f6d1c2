"""Runs the pipeline's stages in order, skipping complete ones, resuming interrupted ones.

Stages, in order, each writing only into `RUN_DIR/<stage>/` (one module each):

  synthesize  the teacher (`gold` offline rationales, or `openai`) + synthetic problems
  verify      execute every program, keep those whose answer is right
  train       `python -m t5x.train` on the kept programs (tiny model from scratch,
              or a converted CodeT5 checkpoint)
  refine      (optional, PaD's stage III) refinement data from mutated programs and
              the student's own failures, then t5x training continued on it
  stepwise_verifier  (optional, PaD's stage IV scorer) the student's step prefixes
              labelled by their completions, a step verifier trained on them with t5x
              (decode `stepwise_beam` scores steps with it)
  decode      `python -m pad_jax.infer` on the synthetic held-out split and the benchmarks
  score       execute the student's programs in the sandbox, compare with gold answers
  report      `RUN_DIR/report.json`, `RUN_DIR/report.md` and PNG plots

Every stage's config is built and validated before the first stage runs
(`configs.stage_configs`), so a mistake in the last stage's config costs
nothing. A stage is complete when its marker `RUN_DIR/<stage>/DONE.json`
exists (written last, atomically); complete stages are skipped, so a killed
pipeline resumes where it stopped: an interrupted stage continues from its
partial outputs when its config and inputs are those it started with
(`STARTED.json`), else it starts over in an emptied directory. Every marker
records the exact runs of the stages before it, so a stage that runs again
makes every later stage run again. Running a complete stage with a different
config is an error (use `rerun`, which redoes a stage from scratch and
everything after it, or another RUN_DIR) so results never mix two configs
silently.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

import gin
import tqdm

from pad_jax import cli
from pad_jax.errors import ConfigError
from pad_jax.pipeline import configs as configs_lib
from pad_jax.pipeline import decode_stage
from pad_jax.pipeline import refine_stage
from pad_jax.pipeline import report
from pad_jax.pipeline import run_dir as run_dir_lib
from pad_jax.pipeline import score_stage
from pad_jax.pipeline import stepwise_verifier_stage
from pad_jax.pipeline import synthesize_stage
from pad_jax.pipeline import train_stage
from pad_jax.pipeline import verify_stage
from pad_jax.pipeline.configs import ALL_STAGES, PipelineConfig
from pad_jax.pipeline.stage import StageContext, StageError
from pad_jax.pipeline.child import Stopwatch

RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "synthesize": synthesize_stage.run, "verify": verify_stage.run, "train": train_stage.run,
    "refine": refine_stage.run, "stepwise_verifier": stepwise_verifier_stage.run,
    "decode": decode_stage.run, "score": score_stage.run, "report": report.run,
}


class ConfigMismatchError(StageError):
  pass


class _Bars:
  """Progress bars, one line per stage (more when a stage has several parts)."""

  def __init__(self, index: int, count: int, stage: str):
    self.prefix = f"[{index}/{count}] {stage}"

  def __call__(self, total: Optional[int] = None, unit: str = "it",
               desc_suffix: Optional[str] = None):
    desc = self.prefix + (f" {desc_suffix}" if desc_suffix else "")
    return tqdm.tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True,
                mininterval=1.0, smoothing=0.1)


def validated_configs(config: PipelineConfig,
                      rerun: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
  """Every stage's configs, all validated before any work (ConfigError if not)."""
  config.validate()
  unknown = [s for s in rerun if s not in ALL_STAGES]
  if unknown:
    raise ConfigError(f"--rerun: unknown stage(s) {unknown}; expected some of {list(ALL_STAGES)}")
  configs = configs_lib.stage_configs(config.stages)
  if "report" in configs and configs["report"]["report"].title is None:
    configs["report"]["report"] = dataclasses.replace(configs["report"]["report"],
                                                      title=config.title)
  return configs


def run_pipeline(config: PipelineConfig, rerun: Sequence[str] = (),
                 configs: Optional[Mapping[str, Mapping[str, Any]]] = None) -> dict[str, Any]:
  """Runs the configured stages; returns `{stage: marker}` (see `RunDir.mark_done`).

  Args:
    config: the run.
    rerun: stages to redo from scratch (and every later one).
    configs: the stages' configs (default: built from gin and validated now).
  """
  configs = configs if configs is not None else validated_configs(config, rerun)
  run = run_dir_lib.RunDir(config.run_dir)
  run.root.mkdir(parents=True, exist_ok=True)
  markers: dict[str, Any] = {}
  statuses: dict[str, str] = {}
  for index, stage in enumerate(config.stages, 1):
    cfg_dict = configs_lib.config_dict(configs[stage])
    # What this stage's outputs depend on: the exact runs of the earlier stages.
    upstream = {s: m.get("id") for s, m in markers.items()}
    marker = run.marker(stage)
    if stage in rerun or (marker is not None and marker.get("upstream") != upstream):
      run.reset(stage)  # its inputs changed: old outputs (e.g. checkpoints) must not be resumed
      marker = None
    if marker is not None:
      if not same_config(marker.get("config"), cfg_dict, configs[stage]):
        raise ConfigMismatchError(_mismatch_message(run, stage, marker.get("config"), cfg_dict))
      markers[stage], statuses[stage] = marker, "skipped"
      print(f"[{index}/{len(config.stages)}] {stage}: complete, skipped "
            f"(finished {marker['finished_at']}, {marker['wall_s']:.1f}s)", file=sys.stderr)
      continue
    run.start(stage, config=cfg_dict, upstream=upstream)  # resumes only a same-input start
    ctx = StageContext(run=run, stage_dir=run.stage_dir(stage),
                       bar=_Bars(index, len(config.stages), stage))
    watch = Stopwatch()
    summary = RUNNERS[stage](ctx, configs[stage], markers)
    markers[stage] = run.mark_done(stage, wall_s=watch.seconds, config=cfg_dict,
                                   summary=summary, upstream=upstream)
    statuses[stage] = "ran"
  print(summary_table(run, markers, statuses))
  return markers


def same_config(old: Any, new: dict[str, Any], configs: Mapping[str, Any]) -> bool:
  """Whether a completed stage's recorded config is the one asked for now.

  A field added to a config class after the stage ran is absent from its
  marker; at its default value it cannot have changed what the stage did, so
  run directories made before the field existed still resume.
  """
  if not isinstance(old, dict) or set(old) != set(new):
    return False
  for name, fields in new.items():
    recorded = old[name]
    if not isinstance(fields, dict) or not isinstance(recorded, dict):
      if recorded != fields:
        return False
      continue
    defaults = _field_defaults(type(configs[name]))
    for key, value in fields.items():
      if key in recorded:
        if recorded[key] != value:
          return False
      elif key not in defaults or defaults[key] != value:
        return False
    if set(recorded) - set(fields):
      return False
  return True


def _field_defaults(cls: type) -> dict[str, Any]:
  """A config class's field defaults, JSON-normalized like `config_dict`."""
  defaults = {}
  for field in dataclasses.fields(cls):
    if field.default is not dataclasses.MISSING:
      defaults[field.name] = field.default
    elif field.default_factory is not dataclasses.MISSING:
      defaults[field.name] = field.default_factory()
  return json.loads(json.dumps(defaults, default=list))


def _mismatch_message(run: run_dir_lib.RunDir, stage: str, old: Any, new: dict[str, Any]) -> str:
  old, new = _flat(old or {}), _flat(new)
  diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
           if old.get(k) != new.get(k)]
  return (f"{run.marker_path(stage)}: stage {stage!r} was completed with another config "
          f"({'; '.join(diffs)}); pass --rerun={stage} to redo it, or use another RUN_DIR")


def _flat(configs: Mapping[str, Any]) -> dict[str, Any]:
  """`{"synthesize": {"limit": 1}}` -> `{"synthesize.limit": 1}` (one level)."""
  return {f"{name}.{k}" if isinstance(fields, dict) else name: v
          for name, fields in configs.items()
          for k, v in (fields.items() if isinstance(fields, dict) else [(None, fields)])}


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
    numbers = run_dir_lib.read_json(report_path)
    lines.append("")
    for key in ("synthetic_accuracy", "synthetic_runnable_rate", "gsm8k_accuracy",
                "gsm8k_runnable_rate", "teacher_programs_kept", "total_wall_s"):
      if key in numbers:
        lines.append(f"  {key:<26} {_fmt(numbers[key])}")
    lines.append(f"\n  report: {run.root / 'report.md'}")
  return "\n".join(lines)


def _stage_result(stage: str, summary: dict[str, Any]) -> str:
  if stage == "verify":
    return f"kept {summary.get('kept')} {json.dumps(summary.get('kept_by_source', {}))}"
  if stage == "refine":
    return (f"{summary.get('refinement_rows')} refinement rows, step {summary.get('step')}, "
            f"{len(summary.get('rounds') or [None])} round(s)")
  if stage == "stepwise_verifier":
    return (f"{summary.get('prefixes')} prefixes ({summary.get('correct')} correct), "
            f"step {summary.get('step')}")
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
  """Parses gin files and bindings (the configurables are imported above)."""
  for path in search_paths:
    gin.add_config_file_search_path(path)
  with cli.quiet_gin_search():
    gin.parse_config_files_and_bindings(list(gin_files), list(bindings))
