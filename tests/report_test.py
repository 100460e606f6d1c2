"""Tests for pad_jax.pipeline.report: report.json keys, PNG plots and report.md from stage outputs."""

import json
import pathlib
import subprocess
import sys

from conftest import REPO, run_module
from pad_jax import atomic
from pad_jax.pipeline import report as report_lib
from pad_jax.pipeline import run_dir as run_dir_lib
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_jsonl(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _make_run(root: pathlib.Path) -> run_dir_lib.RunDir:
  """A run directory laid out as the pipeline's stages write it."""
  run = run_dir_lib.RunDir(root)
  for stage, wall in (("synthesize", 1.5), ("verify", 2.5), ("train", 60.0), ("decode", 20.0),
                      ("score", 3.0)):
    run.stage_dir(stage).mkdir(parents=True)
    summary = {}
    if stage == "train":
      summary = {"step": 30, "examples": {"gold": 40, "synthetic": 200},
                 "questions": {"gold": 40, "synthetic": 200}, "checkpoint_dir": "/x/checkpoint_30",
                 "final_metrics": {"train/loss_per_nonpadding_target_token": 1.25,
                                   "train/accuracy": 0.6}}
    run.mark_done(stage, wall_s=wall, config={}, summary=summary)
  # verify/report.json: the teacher's report (pad_jax.teacher.verify) + synthetic.
  atomic.write_json(run.stage_dir("verify") / "report.json", {
      "mode": "pad", "kept": 240, "kept_by_source": {"gold": 40, "synthetic": 200},
      "sources": {
          "teacher": {"status_counts": {"ok": 41, "runtime_error": 1}, "pass_rate": 0.952,
                      "pass_rate_by_variant": {"gold": {"completions": 42, "correct": 40,
                                                        "pass_rate": 0.952}}},
          "synthetic": {"programs": 200, "kept": 200, "pass_rate": 1.0,
                        "status_counts": {"ok": 200},
                        "pass_rate_by_variant": {"add": 1.0, "divide": 1.0}}}})
  curves = {
      "train/loss_per_nonpadding_target_token": [[10, 3.0], [20, 2.0], [30, 1.25]],
      "train/accuracy": [[10, 0.3], [20, 0.5], [30, 0.6]],
      "training_eval/pad_x/loss_per_nonpadding_target_token": [[10, 3.1], [30, 1.4]],
      "training_eval/pad_x/accuracy": [[10, 0.28], [30, 0.55]],
  }
  atomic.write_json(run.stage_dir("train") / "curves.json", curves)
  summary = {}
  for name, statuses in (("synthetic", ["ok", "ok", "ok", "syntax_error"]),
                         ("gsm8k", ["ok", "runtime_error", "syntax_error", "syntax_error"])):
    inputs = [{"id": f"{name}-{i}", "question": f"Q{i}?", "answer": float(i)} for i in range(4)]
    scored = [{"id": f"{name}-{i}", "status": s, "value": float(i) if s == "ok" else None,
               "correct": s == "ok" and i < 2, "answer": float(i), "error": None,
               "prediction": f"def solution():\n    return {i}\n"} for i, s in enumerate(statuses)]
    _write_jsonl(run.stage_dir("decode") / f"{name}.inputs.jsonl", inputs)
    _write_jsonl(run.stage_dir("score") / f"{name}.jsonl", scored)
    summary[name] = {"n": 4, "accuracy": sum(r["correct"] for r in scored) / 4,
                     "runnable_rate": statuses.count("ok") / 4,
                     "status_counts": {s: statuses.count(s) for s in set(statuses)}}
  atomic.write_json(run.stage_dir("score") / "summary.json", summary)
  return run


def test_report_json_has_the_headline_numbers(tmp_path):
  run = _make_run(tmp_path)
  headline = report_lib.write_report(run, report_lib.ReportConfig(title="toy"))
  report = json.loads((tmp_path / "report.json").read_text())
  assert report["synthetic_accuracy"] == 0.5 and report["synthetic_runnable_rate"] == 0.75
  assert report["gsm8k_accuracy"] == 0.25 and report["gsm8k_runnable_rate"] == 0.25
  assert report["teacher_programs_kept"] == 40  # the gold teacher's, not the synthetic ones
  assert report["programs_kept_by_source"] == {"gold": 40, "synthetic": 200}
  assert report["stage_wall_s"] == {"synthesize": 1.5, "verify": 2.5, "train": 60.0,
                                    "decode": 20.0, "score": 3.0}
  assert report["total_wall_s"] == 87.0
  assert report["student_status_counts"]["gsm8k"] == {"ok": 1, "runtime_error": 1,
                                                      "syntax_error": 2}
  assert report["teacher_status_counts"] == {"ok": 41, "runtime_error": 1}
  assert report["teacher_pass_rate_by_variant"] == {"teacher": {"gold": 0.952},
                                                    "synthetic": {"add": 1.0, "divide": 1.0}}
  assert report["train"]["step"] == 30
  assert headline["gsm8k_accuracy"] == 0.25 and headline["teacher_programs_kept"] == 40


def test_plots_are_pngs_and_markdown_links_them(tmp_path):
  run = _make_run(tmp_path)
  report_lib.write_report(run, report_lib.ReportConfig(title="Toy run"))
  report = json.loads((tmp_path / "report.json").read_text())
  assert set(report["plots"]) == {"loss", "accuracy", "student_status", "teacher_pass_rate",
                                  "teacher_status"}
  for relpath in report["plots"].values():
    data = (tmp_path / relpath).read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000
  markdown = (tmp_path / "report.md").read_text()
  assert markdown.startswith("# Toy run\n")
  for relpath in report["plots"].values():
    assert f"]({relpath})" in markdown
  assert "| gsm8k | 4 | 25.0% | 25.0% |" in markdown
  assert "| synthetic | 4 | 50.0% | 75.0% |" in markdown
  assert "| total | 87.0 |" in markdown
  assert "wrong (syntax_error" in markdown  # example predictions, right and wrong


def test_missing_stages_give_a_partial_report(tmp_path):
  run = run_dir_lib.RunDir(tmp_path)
  run.stage_dir("synthesize").mkdir()
  run.mark_done("synthesize", wall_s=1.0, config={}, summary={})
  report_lib.write_report(run, report_lib.ReportConfig())
  report = json.loads((tmp_path / "report.json").read_text())
  assert report["stage_wall_s"] == {"synthesize": 1.0} and report["plots"] == {}
  assert "## Wall time per stage" in (tmp_path / "report.md").read_text()


def test_cli_redraws_a_report(tmp_path):
  _make_run(tmp_path)
  out = subprocess.run([sys.executable, "-m", "pad_jax.pipeline.report", f"--run_dir={tmp_path}"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert json.loads(out.stdout)["synthetic_accuracy"] == 0.5
  bad = subprocess.run([sys.executable, "-m", "pad_jax.pipeline.report", f"--run_dir={tmp_path}/nope"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines()[-1] == f"error: --run_dir: not a directory: {tmp_path}/nope"
  assert "Traceback" not in bad.stderr


def test_accuracy_legend_names_each_eval_set(tmp_path, monkeypatch):
  """A mixture's training eval writes one curve per eval set: each legend says which."""
  curves = {"train/accuracy": [[10, 0.3], [20, 0.5]],
            "training_eval/pad_x/accuracy": [[10, 0.28], [20, 0.4]],
            "training_eval/pad_x_gold/accuracy": [[10, 0.2], [20, 0.3]],
            "training_eval/pad_x_synthetic/accuracy": [[10, 0.35], [20, 0.6]]}
  legends = []
  real_save = report_lib.save

  def save(plt, fig, path, **kwargs):
    legends.extend(text.get_text() for text in fig.axes[0].get_legend().get_texts())
    return real_save(plt, fig, path, **kwargs)

  monkeypatch.setattr(report_lib, "save", save)
  assert report_lib.plot_curves(curves, ["accuracy"], "accuracy", tmp_path / "a.png",
                                final_points={"gsm8k execution accuracy": (20, 0.1)}) == "a.png"
  assert legends == ["train token accuracy",
                     "pad_x validation (teacher-forced) token accuracy",
                     "pad_x_gold validation (teacher-forced) token accuracy",
                     "pad_x_synthetic validation (teacher-forced) token accuracy",
                     "gsm8k execution accuracy"]
  assert (report_lib.series_label("inference_eval/pad_eval_gsm8k", "loss_per_nonpadding_target_token")
          == "pad_eval_gsm8k validation (decoded) loss per token")
