"""Experiment sweeps over whole pipelines (`python -m pad_jax.experiments --name=NAME`).

An experiment is a gin file `gin_configs/experiments/<NAME>.gin` that
configures a pipeline (as `gin_configs/pipelines/*.gin` do) plus a
`SweepConfig`: the points of the sweep, each a set of gin bindings applied on
top of the pipeline config, and the stages the points share (run once). For
example the data-efficiency sweep trains on fractions 1/8 ... 1 of the same
verified programs:

  SweepConfig.parameter = 'TrainConfig.data_fraction'
  SweepConfig.values = [0.125, 0.25, 0.5, 1.0]
  SweepConfig.shared_stages = ['synthesize', 'verify']

Layout: `RUN_DIR/shared/` holds the shared stages; each point runs the whole
pipeline in `RUN_DIR/<label>/`, whose shared stage directories are symbolic
links to `RUN_DIR/shared/<stage>` (so they are complete and skipped). Every
point resumes like any pipeline run. Every point's config is built and
validated before the first stage of the sweep runs. At the end the runner
writes `RUN_DIR/results.json` (one row per point: its bindings, training-set
size and every accuracy/runnable rate of its report), `RUN_DIR/results.md`
and the plot `RUN_DIR/<NAME>.png` (metrics vs the swept quantity).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

import gin

from pad_jax import atomic
from pad_jax import jsonl
from pad_jax.errors import ConfigError
from pad_jax.pipeline import report
from pad_jax.pipeline import run_dir as run_dir_lib
from pad_jax.pipeline import runner
from pad_jax.pipeline.configs import GIN_CONFIGS, PipelineConfig

EXPERIMENTS_DIR = GIN_CONFIGS / "experiments"


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """The points of a sweep.

  Attributes:
    out_dir: where the experiment writes (macro RUN_DIR in the gin files).
    title: the plot's title.
    parameter: gin binding swept (shorthand: one point per value).
    values: its values.
    points: `{label: {binding: value}}` points (instead of parameter/values).
    shared_stages: stages run once for every point, in pipeline order;
      every point runs the shared stages it has before any stage of its own
      (e.g. `['synthesize', 'verify', 'train', 'stepwise_verifier']`: the
      points with a `stepwise_verifier` stage share one verifier, and a
      point without it runs on from `train`).
    shared_dir: where the shared stages run (default `out_dir/shared`), e.g.
      a finished pipeline run whose stages the sweep builds on (`make demo`:
      `outputs/demo`); its stages must have been run with the same configs.
    paired_with: label of the baseline point (e.g. `greedy`): each point's
      per-question results on every eval set are compared with it, and
      `results.md` gets the paired counts (questions fixed: right here,
      wrong in the baseline; broken: the reverse).
    metrics: report keys plotted (default: every `*_accuracy`).
    x_axis: `train_examples` (training programs of the point, log2 scale) or
      `value` (the swept value).
    columns: report keys in `results.md`'s table (default: `metrics`), e.g.
      `synthetic_accuracy`, `synthetic_runnable_rate`,
      `synthetic_seconds_per_question`.
  """

  out_dir: str = "outputs/experiments/sweep"
  title: str = "pad-jax sweep"
  parameter: Optional[str] = None
  values: Sequence[Any] = ()
  points: Optional[Mapping[str, Mapping[str, Any]]] = None
  shared_stages: Sequence[str] = ("synthesize", "verify")
  metrics: Optional[Sequence[str]] = None
  x_axis: str = "train_examples"
  columns: Optional[Sequence[str]] = None
  shared_dir: Optional[str] = None
  paired_with: Optional[str] = None


def sweep_points(cfg: SweepConfig) -> dict[str, dict[str, Any]]:
  """`{label: bindings}` of the sweep, in order."""
  if cfg.points:
    if cfg.parameter:
      raise ConfigError("SweepConfig.points: give either `points` or `parameter`/`values`")
    return {str(k): dict(v) for k, v in cfg.points.items()}
  if not cfg.parameter or not cfg.values:
    raise ConfigError("SweepConfig.parameter: needs `parameter` and `values` (or `points`)")
  short = cfg.parameter.rsplit(".", 1)[-1]
  return {f"{short}={v}": {cfg.parameter: v} for v in cfg.values}


def binding_lines(bindings: Mapping[str, Any]) -> list[str]:
  """`{key: value}` -> gin binding strings (Python literals are gin literals)."""
  return [f"{key} = {value!r}" for key, value in bindings.items()]


def _link_shared(point_dir: pathlib.Path, shared_dir: pathlib.Path, shared: Sequence[str]) -> None:
  point_dir.mkdir(parents=True, exist_ok=True)
  for stage in shared:
    link = point_dir / stage
    if link.is_symlink() or link.exists():
      continue
    os.symlink(os.path.relpath(shared_dir / stage, point_dir), link)


def run_sweep(cfg: SweepConfig, name: str, configure: Callable[[Sequence[str]], None],
              rerun: Sequence[str] = ()) -> list[dict[str, Any]]:
  """Runs every point (skipping finished work); returns the results rows.

  Args:
    cfg: the sweep.
    name: the experiment's name (plot and file names).
    configure: `configure(extra_bindings)` parses the experiment's gin config
      from scratch plus `extra_bindings` (called once per point, so that the
      bindings of one point never leak into the next).
    rerun: stages to redo (see `runner.run_pipeline`).

  Raises:
    ConfigError: a point's config (checked for every point before any runs).
  """
  points = sweep_points(cfg)
  if cfg.paired_with is not None and cfg.paired_with not in points:
    raise ConfigError(f"SweepConfig.paired_with: {cfg.paired_with!r} is not a point; "
                      f"the points are {list(points)}")
  out_dir = pathlib.Path(cfg.out_dir).absolute()
  shared_dir = pathlib.Path(cfg.shared_dir).absolute() if cfg.shared_dir else out_dir / "shared"
  shared = list(cfg.shared_stages)
  plans = {}
  for label, bindings in points.items():  # every point's configs, before any work
    configure(binding_lines(bindings))
    point = dataclasses.replace(PipelineConfig(), run_dir=str(out_dir / label))
    plans[label] = (point, runner.validated_configs(point, rerun))
  shared_configs = _shared_configs(shared, plans)
  print(f"experiment {name}: {len(points)} points -> {out_dir}", file=sys.stderr)
  if shared:
    first = next(iter(plans.values()))[0]
    runner.run_pipeline(dataclasses.replace(first, run_dir=str(shared_dir),
                                            stages=tuple(shared)),
                        rerun=[s for s in rerun if s in shared], configs=shared_configs)
    rerun = [s for s in rerun if s not in shared]
  rows = []
  for label, (point, configs) in plans.items():
    print(f"\n=== {name}: point {label} ===", file=sys.stderr)
    _link_shared(out_dir / label, shared_dir, shared)
    runner.run_pipeline(point, rerun=rerun, configs=configs)
    rows.append(_result_row(label, points[label], out_dir / label))
  if cfg.paired_with is not None:
    baseline = out_dir / cfg.paired_with
    for row in rows:
      row["paired"] = paired_counts(baseline, out_dir / row["label"])
  write_results(out_dir, name, cfg, rows)
  return rows


def _shared_configs(shared: Sequence[str], plans: Mapping[str, tuple[PipelineConfig, Mapping[str, Any]]]
                    ) -> dict[str, Any]:
  """The configs the shared stages run with (ConfigError unless every point can use them).

  Each point must run the shared stages it has first, in order (so its own
  stages only build on shared ones), and every shared stage must be a stage
  of some point, whose config it runs with.
  """
  configs: dict[str, Any] = {}
  for label, (point, point_configs) in plans.items():
    stages = list(point.stages)
    own = [s for s in stages if s in shared]
    if own != stages[:len(own)] or own != [s for s in shared if s in own]:
      raise ConfigError(f"SweepConfig.shared_stages: {list(shared)} must come first, in order, "
                        f"in every point's stages; point {label!r} runs {stages}")
    for stage in own:
      configs.setdefault(stage, point_configs[stage])
  unused = [s for s in shared if s not in configs]
  if unused:
    raise ConfigError(f"SweepConfig.shared_stages: no point runs {unused}")
  return {s: configs[s] for s in shared}


def paired_counts(baseline_dir: pathlib.Path, point_dir: pathlib.Path) -> dict[str, dict[str, int]]:
  """`{eval set: {n, fixed, broken}}` of a point against the baseline, on the same questions.

  Read from both runs' `score/<eval set>.jsonl`; `n` counts the questions
  both scored, `fixed` those right in the point and wrong in the baseline,
  `broken` the reverse, `correct` / `baseline_correct` the questions each got
  right (a point that decoded fewer questions is compared on those).
  """
  out = {}
  for path in sorted((point_dir / "score").glob("*.jsonl")):
    base_path = baseline_dir / "score" / path.name
    if not base_path.exists():
      continue
    base = {r["id"]: bool(r.get("correct")) for r in jsonl.read_rows(base_path)}
    mine = {r["id"]: bool(r.get("correct")) for r in jsonl.read_rows(path)}
    common = [i for i in mine if i in base]
    out[path.stem] = {"n": len(common),
                      "fixed": sum(mine[i] and not base[i] for i in common),
                      "broken": sum(base[i] and not mine[i] for i in common),
                      "correct": sum(mine[i] for i in common),
                      "baseline_correct": sum(base[i] for i in common)}
  return out


def _result_row(label: str, bindings: Mapping[str, Any], point_dir: pathlib.Path) -> dict[str, Any]:
  report = run_dir_lib.read_json(point_dir / "report.json")
  train = report.get("train") or {}
  examples = dict(train.get("examples") or {})
  for fit in (train.get("fit") or {}).values():  # over-length examples dropped
    examples[fit["source"].rsplit(".", 1)[0]] = fit["kept"]
  row = {"label": label, "bindings": dict(bindings), "run_dir": str(point_dir),
         "train_examples": sum(examples.values()),
         "train_questions": sum((train.get("questions") or {}).values()),
         "train_step": train.get("step"), "total_wall_s": report.get("total_wall_s")}
  row.update({k: v for k, v in report.items()
              if k.endswith(("_accuracy", "_runnable_rate", "_seconds_per_question", "_n"))})
  return row


def write_results(out_dir: pathlib.Path, name: str, cfg: SweepConfig,
                  rows: Sequence[Mapping[str, Any]]) -> None:
  """results.json, results.md and the plot."""
  atomic.write_json(out_dir / "results.json", {"experiment": name, "points": list(rows)})
  metrics = list(cfg.metrics or sorted({k for r in rows for k in r if k.endswith("_accuracy")}))
  plot = plot_results(rows, metrics, cfg, out_dir / f"{name}.png")
  columns = list(cfg.columns or metrics)
  header = ["point", "training programs", "steps"] + columns
  lines = [f"# {cfg.title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    cells = [row["label"], row["train_examples"], row["train_step"]]
    cells += [_cell(row.get(c), c) for c in columns]
    lines.append("| " + " | ".join(str(c) for c in cells) + " |")
  lines += paired_table(rows, cfg.paired_with)
  if plot:
    lines += ["", f"![{cfg.title}]({plot})"]
  atomic.write_text(out_dir / "results.md", "\n".join(lines) + "\n")


def paired_table(rows: Sequence[Mapping[str, Any]], baseline: Optional[str]) -> list[str]:
  """results.md's paired counts: per point and eval set, fixed / broken against the baseline."""
  sets = sorted({s for r in rows for s in (r.get("paired") or {})})
  if baseline is None or not sets:
    return []
  lines = ["", f"Paired against `{baseline}` on the same questions: questions fixed (right here, "
               f"wrong there) / broken (the reverse); then this point's accuracy vs the baseline's "
               f"on those n questions.", "",
           "| point | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
  for row in rows:
    if row["label"] == baseline:
      continue
    cells = []
    for name in sets:
      c = (row.get("paired") or {}).get(name)
      cells.append("n/a" if not c or not c["n"] else
                   f"+{c['fixed']} / -{c['broken']}: {100 * c['correct'] / c['n']:.1f}% vs "
                   f"{100 * c['baseline_correct'] / c['n']:.1f}% (n = {c['n']})")
    lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
  return lines


def _cell(value: Any, column: str) -> str:
  if not isinstance(value, (int, float)):
    return "n/a"
  if column.endswith("_seconds_per_question"):
    return f"{value:.3f}"
  if column.endswith("_n"):
    return str(value)
  return f"{100 * value:.1f}%"


def _x(row: Mapping[str, Any], cfg: SweepConfig) -> float:
  if cfg.x_axis == "train_examples":
    return float(row["train_examples"])
  value = next(iter(row["bindings"].values()))
  return float(value)


def plot_results(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str], cfg: SweepConfig,
                 path: pathlib.Path) -> Optional[str]:
  """Metrics vs the swept quantity (lines), or per point (bars); returns the file name."""
  if not rows or not metrics:
    return None
  first_values = [next(iter(r["bindings"].values()), None) for r in rows]
  numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in first_values)
  plt = report.pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4))
  if cfg.x_axis == "train_examples" or numeric and len(rows[0]["bindings"]) == 1:
    xs = [_x(r, cfg) for r in rows]
    for metric in metrics:
      ax.plot(xs, [100 * r.get(metric, float("nan")) for r in rows], marker="o",
              label=metric.replace("_accuracy", " execution accuracy"))
    if cfg.x_axis == "train_examples":
      ax.set_xscale("log", base=2)
      ax.set_xlabel("training programs")
    else:
      ax.set_xlabel(cfg.parameter or "value")
  else:  # categorical points: grouped bars
    width = 0.8 / len(metrics)
    for i, metric in enumerate(metrics):
      ax.bar([j + i * width for j in range(len(rows))],
             [100 * r.get(metric, float("nan")) for r in rows], width,
             label=metric.replace("_accuracy", " accuracy"))
    ax.set_xticks([j + width * (len(metrics) - 1) / 2 for j in range(len(rows))])
    ax.set_xticklabels([r["label"] for r in rows], rotation=25, ha="right", fontsize=8)
  ax.set_ylabel("accuracy (%)")
  ax.set_ylim(bottom=0)  # a zoomed axis makes a 1-point difference look like a trend
  ax.set_title(cfg.title, fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return report.save(plt, fig, path)


def experiment_gin_file(name: str) -> pathlib.Path:
  """`gin_configs/experiments/<name>.gin` (ConfigError naming the known ones)."""
  path = EXPERIMENTS_DIR / f"{name}.gin"
  if not path.exists():
    known = sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.gin"))
    raise ConfigError(f"--name={name}: no {path}; experiments: {', '.join(known)}")
  return path
