"""The run report: `RUN_DIR/report.json`, `RUN_DIR/report.md` and PNG plots.

Built only from the files the earlier stages wrote (their completion
markers, `verify/report.json`, `train/curves.json`, `score/*.jsonl`), so it
can be redrawn at any time: `python -m pad_jax.pipeline.report --run_dir=DIR`.

`report.json` keys (always present when the stage ran):

* `<eval_set>_accuracy`, `<eval_set>_runnable_rate` for every scored set
  (`synthetic_accuracy`, `gsm8k_accuracy`, `gsm8k_runnable_rate`, ...), and
  `<eval_set>_seconds_per_question` when `DecodeConfig.time_each_set`;
* `teacher_programs_kept` (programs the teacher produced that passed
  verification), `programs_kept_by_source`;
* `stage_wall_s` (`{stage: seconds}`), `total_wall_s`;
* `student_status_counts` (`{eval_set: {status: n}}`),
  `teacher_status_counts`, `teacher_pass_rate_by_variant`;
* `train` (steps, final metrics, `fit`: per source, the examples kept within
  the feature lengths when `runs/drop_over_length.gin` was used), `curves`
  (tags of `train/curves.json`).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping, Optional, Sequence

from absl import flags

from pad_jax import atomic
from pad_jax import cli
from pad_jax import jsonl
from pad_jax import tf_devices
from pad_jax.errors import ConfigError
from pad_jax.pipeline import run_dir as run_dir_lib
from pad_jax.pipeline.configs import ReportConfig
from pad_jax.pipeline.stage import StageContext
from tasks import pipeline_tasks  # after tf_devices: it imports TensorFlow

PLOTS_DIR = "report"
_EXAMPLES_SHOWN = 3


# ---------------------------------------------------------------------------
# Collecting the numbers.
# ---------------------------------------------------------------------------


def _maybe_json(path: pathlib.Path) -> Any:
  return run_dir_lib.read_json(path) if path.exists() else None


def _teacher_report(verify_report: Mapping[str, Any]) -> dict[str, Any]:
  """The teacher's part of `verify/report.json`, whatever source name it has."""
  sources = dict(verify_report.get("sources", {}))
  return sources.get("teacher", {})


def _pass_rate_by_variant(source_report: Mapping[str, Any]) -> dict[str, float]:
  for key in ("pass_rate_by_variant", "pass_rate_per_variant", "per_variant_pass_rate"):
    value = source_report.get(key)
    if isinstance(value, Mapping):
      return {str(k): float(v if not isinstance(v, Mapping) else v.get("pass_rate", 0.0))
              for k, v in value.items()}
  per_variant = source_report.get("per_variant") or source_report.get("variants")
  if isinstance(per_variant, Mapping):
    return {str(k): float(v.get("pass_rate", 0.0)) for k, v in per_variant.items()
            if isinstance(v, Mapping)}
  return {}


def _status_counts(source_report: Mapping[str, Any]) -> dict[str, int]:
  for key in ("status_counts", "execution_status_counts", "statuses"):
    value = source_report.get(key)
    if isinstance(value, Mapping):
      return {str(k): int(v) for k, v in value.items()}
  return {}


def collect(run: run_dir_lib.RunDir) -> dict[str, Any]:
  """Builds the content of `report.json` from the stage outputs."""
  report: dict[str, Any] = {"run_dir": str(run.root)}
  markers = {stage: run.marker(stage) for stage in
             ("synthesize", "verify", "train", "refine", "stepwise_verifier", "decode",
              "score")}
  report["stage_wall_s"] = {s: m["wall_s"] for s, m in markers.items() if m}
  report["total_wall_s"] = round(sum(report["stage_wall_s"].values()), 1)
  report["configs"] = {s: m["config"] for s, m in markers.items() if m}

  verify_report = _maybe_json(run.stage_dir("verify") / "report.json") or {}
  if verify_report:
    teacher = _teacher_report(verify_report)
    kept_by_source = verify_report.get("kept_by_source", {})
    report["programs_kept_by_source"] = kept_by_source
    report["programs_kept"] = verify_report.get("kept")
    report["teacher_programs_kept"] = sum(v for k, v in kept_by_source.items() if k != "synthetic")
    report["teacher_pass_rate"] = teacher.get("pass_rate")
    report["teacher_status_counts"] = _status_counts(teacher)
    report["teacher_pass_rate_by_variant"] = {
        name: _pass_rate_by_variant(src) for name, src in verify_report.get("sources", {}).items()}

  score_summary = _maybe_json(run.stage_dir("score") / "summary.json") or {}
  report["student_status_counts"] = {}
  order = list((markers["decode"] or {}).get("summary", {}).get("examples", {}))
  for name in sorted(score_summary, key=lambda n: (order.index(n) if n in order else len(order), n)):
    summary = score_summary[name]
    report[f"{name}_accuracy"] = summary["accuracy"]
    report[f"{name}_runnable_rate"] = summary["runnable_rate"]
    report[f"{name}_n"] = summary["n"]
    report["student_status_counts"][name] = summary["status_counts"]
  decode_summary = (markers["decode"] or {}).get("summary", {})
  for name, value in decode_summary.get("seconds_per_question", {}).items():
    report[f"{name}_seconds_per_question"] = value

  if markers["train"]:
    train = markers["train"]["summary"]
    report["train"] = {k: train.get(k) for k in ("step", "examples", "questions", "final_metrics",
                                                 "checkpoint_dir")}
    # Examples dropped for being longer than the feature lengths
    # (runs/drop_over_length.gin), per source file.
    report["train"]["fit"] = pipeline_tasks.fit_counts(str(run.stage_dir("train") / "data"))
  curves = _maybe_json(run.stage_dir("train") / "curves.json") or {}
  report["curves"] = sorted(curves)
  return report


# ---------------------------------------------------------------------------
# Plots.
# ---------------------------------------------------------------------------


def pyplot():
  """matplotlib's pyplot on the file-only Agg backend.

  Imported when a plot is drawn, not at import time, on purpose: matplotlib
  takes about a second to import and most users of this module only read
  numbers.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def save(plt, fig, path: pathlib.Path, **savefig_args: Any) -> str:
  """Writes a finished figure to `path` (PNG, 100 dpi), closes it, returns the file name."""
  fig.tight_layout()
  fig.savefig(path, dpi=100, **savefig_args)
  plt.close(fig)
  return path.name


def _select(curves: Mapping[str, Sequence], metric: str) -> dict[str, Sequence]:
  """Curves whose tag ends with `/metric` (e.g. loss), by collection."""
  return {tag[:-len(metric) - 1]: points for tag, points in curves.items()
          if tag.endswith("/" + metric) and points}


def collection_label(collection: str) -> str:
  """t5x's summary directory in words, naming the eval set.

  t5x writes one directory per eval task (`training_eval/<task>`,
  `inference_eval/<task>`; a mixture gets one for itself and one per
  member), so the label names the task: `pad_x_gold validation
  (teacher-forced)`.
  """
  kinds = {"training_eval": "validation (teacher-forced)",
           "inference_eval": "validation (decoded)"}
  kind, _, task = collection.partition("/")
  if kind in kinds and task:
    return f"{task} {kinds[kind]}"
  return collection


def series_label(collection: str, metric: str) -> str:
  """The legend of one curve: `collection_label` and the metric in words."""
  name = {"loss_per_nonpadding_target_token": "loss per token",
          "accuracy": "token accuracy"}.get(metric, metric)
  return f"{collection_label(collection)} {name}"


def plot_curves(curves: Mapping[str, Sequence], metrics: Sequence[str], ylabel: str,
                path: pathlib.Path,
                final_points: Optional[Mapping[str, tuple[float, float]]] = None) -> Optional[str]:
  """Line plot of every curve whose tag ends with one of `metrics`.

  `final_points` adds labelled markers, e.g. the held-out execution accuracy
  measured after training: `{label: (step, value)}`.
  """
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4))
  drawn = 0
  for metric in metrics:
    for collection, points in sorted(_select(curves, metric).items()):
      steps, values = zip(*points)
      ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3,
              label=series_label(collection, metric))
      drawn += 1
  if not drawn:
    plt.close(fig)
    return None
  for label, (step, value) in (final_points or {}).items():
    ax.plot([step], [value], marker="*", markersize=12, linestyle="none", label=label)
  ax.set_xlabel("step")
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  return save(plt, fig, path)


def plot_status(counts: Mapping[str, Mapping[str, int]], title: str,
                path: pathlib.Path) -> Optional[str]:
  """Stacked horizontal bars: share of each execution status per group."""
  if not counts:
    return None
  plt = pyplot()
  statuses = sorted({s for c in counts.values() for s in c},
                    key=lambda s: (s != "ok", s))
  groups = list(counts)
  fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.6 * len(groups)))
  left = [0.0] * len(groups)
  for status in statuses:
    shares = [counts[g].get(status, 0) / max(1, sum(counts[g].values())) for g in groups]
    ax.barh(groups, shares, left=left, label=status)
    left = [a + b for a, b in zip(left, shares)]
  ax.set_xlim(0, 1)
  ax.set_xlabel("share of programs")
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.35))
  return save(plt, fig, path, bbox_inches="tight")


def plot_pass_rate(by_source: Mapping[str, Mapping[str, float]], path: pathlib.Path) -> Optional[str]:
  """Bars: teacher pass rate per prompt variant (one panel per source)."""
  by_source = {k: v for k, v in by_source.items() if v}
  if not by_source:
    return None
  plt = pyplot()
  fig, axes = plt.subplots(1, len(by_source), figsize=(6.4 * len(by_source), 4), squeeze=False)
  for ax, (source, rates) in zip(axes[0], sorted(by_source.items())):
    names = list(rates)
    ax.bar(range(len(names)), [rates[n] for n in names])
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("pass rate")
    ax.set_title(f"{source}: pass rate per prompt variant", fontsize=10)
  return save(plt, fig, path)


# ---------------------------------------------------------------------------
# Markdown.
# ---------------------------------------------------------------------------


def _pct(value: Any) -> str:
  return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "n/a"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return lines + [""]


def _examples(run: run_dir_lib.RunDir, name: str) -> list[str]:
  path = run.stage_dir("score") / f"{name}.jsonl"
  inputs = run.stage_dir("decode") / f"{name}.inputs.jsonl"
  if not path.exists() or not inputs.exists():
    return []
  questions = {r["id"]: r["question"] for r in jsonl.read_rows(inputs)}
  rows = jsonl.read_rows(path)
  lines = []
  for correct in (True, False):
    chosen = [r for r in rows if r["correct"] == correct][:_EXAMPLES_SHOWN]
    for row in chosen:
      verdict = "correct" if correct else f"wrong ({row['status']}, value {row['value']})"
      lines += [f"<details><summary>{name} {row['id']}: {verdict}, gold {row['answer']}</summary>",
                "", f"Question: {questions.get(row['id'], '')}", "", "```python",
                row["prediction"].rstrip(), "```", "</details>", ""]
  return lines


def markdown(run: run_dir_lib.RunDir, report: Mapping[str, Any], plots: Mapping[str, str],
             title: str) -> str:
  lines = [f"# {title}", "", f"Run directory: `{report['run_dir']}`", "", "## Results", ""]
  sets = list(report.get("student_status_counts", {}))
  timed = any(f"{s}_seconds_per_question" in report for s in sets)
  lines += _table(["eval set", "examples", "execution accuracy", "runnable rate"]
                  + (["seconds per question"] if timed else []),
                  [(s, report.get(f"{s}_n"), _pct(report.get(f"{s}_accuracy")),
                    _pct(report.get(f"{s}_runnable_rate")))
                   + ((f"{report.get(f'{s}_seconds_per_question', float('nan')):.3f}",)
                      if timed else ()) for s in sets])
  if "programs_kept_by_source" in report:
    lines += [f"Training programs kept after verification: {report.get('programs_kept')} "
              f"({', '.join(f'{k}: {v}' for k, v in report['programs_kept_by_source'].items())}); "
              f"teacher programs kept: {report.get('teacher_programs_kept')}, teacher pass rate "
              f"{_pct(report.get('teacher_pass_rate'))}.", ""]
  train = report.get("train") or {}
  if train:
    final = train.get("final_metrics") or {}
    shown = {}
    for tag, value in sorted(final.items()):
      collection, _, metric = tag.rpartition("/")
      if metric in ("loss_per_nonpadding_target_token", "accuracy"):
        shown[series_label(collection, metric)] = value
    lines += [f"Student trained for {train.get('step')} steps; final "
              + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()) + ".", ""]
    for fit in (train.get("fit") or {}).values():
      lines += [f"`{fit['source']}`: {fit['kept']} of {fit['rows']} training programs fit the "
                f"feature lengths {fit['max_lengths']} and were trained on (questions too long: "
                f"{fit['inputs_too_long']}, programs too long: {fit['targets_too_long']}).", ""]
  lines += ["## Wall time per stage", ""]
  lines += _table(["stage", "seconds"], [(k, f"{v:.1f}") for k, v in report["stage_wall_s"].items()]
                  + [("total", f"{report['total_wall_s']:.1f}")])
  captions = {"loss": "Training and validation loss", "accuracy": "Accuracy vs step",
              "student_status": "Execution status of the student's predictions",
              "teacher_pass_rate": "Teacher pass rate per prompt variant",
              "teacher_status": "Execution status of the teacher's programs"}
  if plots:
    lines += ["## Plots", ""]
    for key, name in plots.items():
      lines += [f"### {captions.get(key, key)}", "", f"![{captions.get(key, key)}]({PLOTS_DIR}/{name})", ""]
  for name, counts in report.get("student_status_counts", {}).items():
    lines += [f"## Status breakdown: {name}", ""]
    n = max(1, sum(counts.values()))
    lines += _table(["status", "count", "share"],
                    [(s, c, _pct(c / n)) for s, c in sorted(counts.items(), key=lambda x: -x[1])])
  examples = [line for name in sets for line in _examples(run, name)]
  if examples:
    lines += ["## Example predictions", ""] + examples
  return "\n".join(lines) + "\n"


def _final_accuracy_points(report: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
  step = (report.get("train") or {}).get("step")
  if step is None:
    return {}
  return {f"{name} execution accuracy (after training)": (step, report[f"{name}_accuracy"])
          for name in report.get("student_status_counts", {})}


def run(ctx: StageContext, configs: Mapping[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
  """The report stage: writes the run's report (see `write_report`)."""
  del upstream
  return write_report(ctx.run, configs["report"])


def write_report(run: run_dir_lib.RunDir, cfg: ReportConfig) -> dict[str, Any]:
  """Writes report.json, report.md and the plots; returns the headline numbers."""
  report = collect(run)
  plots_dir = run.root / PLOTS_DIR
  plots_dir.mkdir(parents=True, exist_ok=True)
  curves = _maybe_json(run.stage_dir("train") / "curves.json") or {}
  drawn = {
      "loss": plot_curves(curves, ["loss_per_nonpadding_target_token"], "loss per target token",
                          plots_dir / "loss.png"),
      "accuracy": plot_curves(curves, ["accuracy"], "accuracy", plots_dir / "accuracy.png",
                              final_points=_final_accuracy_points(report)),
      "student_status": plot_status(report.get("student_status_counts", {}),
                                    "student predictions", plots_dir / "student_status.png"),
      "teacher_pass_rate": plot_pass_rate(report.get("teacher_pass_rate_by_variant", {}),
                                          plots_dir / "teacher_pass_rate.png"),
      "teacher_status": plot_status({"teacher": report["teacher_status_counts"]}
                                    if report.get("teacher_status_counts") else {},
                                    "teacher programs", plots_dir / "teacher_status.png"),
  }
  plots = {k: v for k, v in drawn.items() if v}
  report["plots"] = {k: f"{PLOTS_DIR}/{v}" for k, v in plots.items()}
  atomic.write_json(run.root / "report.json", report)
  atomic.write_text(run.root / "report.md", markdown(run, report, plots, cfg.title or "pad-jax run"))
  headline = {k: v for k, v in report.items() if k.endswith(("_accuracy", "_runnable_rate"))}
  headline["teacher_programs_kept"] = report.get("teacher_programs_kept")
  headline["plots"] = sorted(plots)
  return headline


def main(argv: Sequence[str]) -> int:
  """`python -m pad_jax.pipeline.report --run_dir=DIR`: redraws a run's report."""
  tf_devices.hide_accelerators_from_tf()  # TF (imported by seqio) stays on the host
  cli.no_arguments(argv)
  run_dir = flags.FLAGS.run_dir  # pylint: disable=redefined-outer-name
  cli.require(run_dir=run_dir)
  if not os.path.isdir(run_dir):
    raise ConfigError(f"--run_dir: not a directory: {run_dir}")
  headline = write_report(run_dir_lib.RunDir(run_dir), ReportConfig(title=flags.FLAGS.title))
  print(json.dumps(headline, indent=2, sort_keys=True))
  return 0


if __name__ == "__main__":
  # Flags are defined here, not at import, so that importing the module (the
  # pipeline does) adds no flags to another program.
  flags.DEFINE_string("run_dir", None, "A pipeline run directory.")
  flags.DEFINE_string("title", "pad-jax run", "The report's heading.")
  cli.run(main)
