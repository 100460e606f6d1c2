"""Tests for pad_jax.experiments (sweeps) and the CoT baseline's tasks/cot_tasks.py.

The end-to-end test runs the real data-efficiency sweep at toy size: the
tiny model on the synthetic task, two data fractions, a few t5x steps each,
decoding and scoring the held-out split, then checks the nested training
sets, the shared stages, results.json and the plot.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env
from pad_jax.errors import ConfigError
from pad_jax.pipeline import configs
from pad_jax.pipeline import experiments
from pad_jax.pipeline import runner
from tasks import cot_tasks

TOY_T5X_RUN = REPO / "tests" / "testdata" / "toy_t5x_run.gin"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # ~90 s, two tiny pipelines; the sweep's orchestration is tested below by default
def test_data_efficiency_sweep_end_to_end(tmp_path):
  out_dir = tmp_path / "exp"
  command = [
      sys.executable, "-m", "pad_jax.experiments", "--name=data_efficiency_tiny",
      f"--gin.RUN_DIR='{out_dir}'",
      "--gin.SweepConfig.values=[0.5, 1.0]",
      "--gin.SynthesizeConfig.synthetic_train=64",
      "--gin.SynthesizeConfig.synthetic_validation=8",
      "--gin.SynthesizeConfig.synthetic_test=8",
      "--gin.TrainConfig.train_steps=6",
      f"--gin.TrainConfig.run_gin_files=['runs/demo_train.gin', '{TOY_T5X_RUN}']",
      "--gin.TrainConfig.macros={'CHECKPOINT_PERIOD': 6}",
      "--gin.DecodeConfig.max_decode_length=48",
  ]
  out = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                       timeout=850)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  results = json.loads((out_dir / "results.json").read_text())
  assert results["experiment"] == "data_efficiency_tiny"
  points = results["points"]
  assert [p["label"] for p in points] == ["data_fraction=0.5", "data_fraction=1.0"]
  assert [p["train_examples"] for p in points] == [32, 64]
  for point in points:
    assert 0.0 <= point["synthetic_accuracy"] <= 1.0
    assert point["train_step"] == 6
    run = pathlib.Path(point["run_dir"])
    for stage in ("synthesize", "verify"):  # shared, run once
      assert (run / stage).is_symlink()
      assert (run / stage).resolve() == (out_dir / "shared" / stage).resolve()
    assert (run / "report.json").exists()
  half = {json.loads(l)["id"] for l in open(out_dir / "data_fraction=0.5/train/data/synthetic.jsonl")}
  full = {json.loads(l)["id"] for l in open(out_dir / "data_fraction=1.0/train/data/synthetic.jsonl")}
  assert half < full
  assert (out_dir / "data_efficiency_tiny.png").read_bytes()[:8] == PNG_MAGIC
  assert "data_efficiency_tiny.png" in (out_dir / "results.md").read_text()


def test_sweep_points_and_bindings():
  cfg = experiments.SweepConfig(parameter="TrainConfig.data_fraction", values=[0.125, 1.0])
  points = experiments.sweep_points(cfg)
  assert points == {"data_fraction=0.125": {"TrainConfig.data_fraction": 0.125},
                    "data_fraction=1.0": {"TrainConfig.data_fraction": 1.0}}
  assert experiments.binding_lines({"ScoreConfig.answer_format": "text", "X.k": 5}) == [
      "ScoreConfig.answer_format = 'text'", "X.k = 5"]
  named = experiments.SweepConfig(points={"pad": {"A.b": 1}, "cot": {"A.b": 2}})
  assert list(experiments.sweep_points(named)) == ["pad", "cot"]
  with pytest.raises(ConfigError, match="SweepConfig.parameter"):
    experiments.sweep_points(experiments.SweepConfig())


def test_results_table_and_bar_plot_for_named_points(tmp_path):
  rows = [{"label": "pad", "bindings": {"TrainConfig.task_format": "program"}, "train_examples": 64,
           "train_step": 10, "synthetic_accuracy": 0.5},
          {"label": "cot", "bindings": {"TrainConfig.task_format": "cot"}, "train_examples": 64,
           "train_step": 10, "synthetic_accuracy": 0.25}]
  cfg = experiments.SweepConfig(points={"pad": {}, "cot": {}}, x_axis="value", title="PaD vs CoT")
  experiments.write_results(tmp_path, "cot_baseline_tiny", cfg, rows)
  assert (tmp_path / "cot_baseline_tiny.png").read_bytes()[:8] == PNG_MAGIC
  table = (tmp_path / "results.md").read_text()
  assert "| pad | 64 | 10 | 50.0% |" in table and "| cot | 64 | 10 | 25.0% |" in table


def test_unknown_experiment_is_a_clear_error():
  out = subprocess.run([sys.executable, "-m", "pad_jax.experiments", "--name=nope"], cwd=REPO,
                       env=subprocess_env(), capture_output=True, text=True, timeout=120)
  assert out.returncode == 2
  line = out.stderr.strip().splitlines()[-1]
  assert "--name=nope" in line and "data_efficiency" in line


# ---------------------------------------------------------------------------
# Chain-of-thought baseline pieces.
# ---------------------------------------------------------------------------


def test_gsm8k_rationale_drops_calculator_marks_and_ends_with_the_answer():
  text = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nIn all 48+24 = <<48+24=72>>72.\n#### 72"
  assert cot_tasks.gsm8k_rationale(text, 72.0) == (
      "Natalia sold 48/2 = 24 clips in May. In all 48+24 = 72. The answer is 72.")


def test_program_rationale_substitutes_values_step_by_step():
  program = ("def solution():\n    \"\"\"How many?\"\"\"\n    boxes = 4\n    per_box = 2.5\n"
             "    # apples in all the boxes\n    total = boxes * per_box\n"
             "    # half of them are eaten\n    left = total - total / 2\n"
             "    result = left\n    return result\n")
  assert cot_tasks.program_rationale(program) == (
      "boxes is 4. per box is 2.5. Apples in all the boxes: total = 4 * 2.5 = 10. "
      "Half of them are eaten: left = 10 - (10 / 2) = 5. The answer is 5.")
  assert cot_tasks.program_rationale("def solution():\n    return open('x')\n") is None
  assert cot_tasks.program_rationale("not python(") is None


def test_every_synthetic_program_gets_a_rationale_with_its_answer():
  from pad_jax.data import synthetic
  for record in synthetic.generate("train", 300, seed=5):
    rationale = cot_tasks.program_rationale(record.program)
    assert cot_tasks.parse_answer(rationale) == pytest.approx(record.answer), record.program


@pytest.mark.parametrize("text,expected", [
    ("so 5 + 3 = 8. The answer is 1,008.", 1008.0),
    ("The answer is: $12.50", 12.5),
    ("the answer is -3 and then the answer is 4", 4.0),
    ("we get 7 apples", 7.0),
    ("no number here", None),
    (b"The answer is 9.", 9.0),
])
def test_parse_answer(text, expected):
  assert cot_tasks.parse_answer(text) == expected


def test_cot_task_round_trip_and_metric(tmp_path):
  import seqio
  path = tmp_path / "cot.jsonl"
  rows = [{"id": f"q{i}", "question": f"What is {i} + 1?", "rationale": f"{i} + 1 = {i + 1}. "
           f"The answer is {i + 1}.", "answer": i + 1} for i in range(40)]
  cot_tasks.write_cot(str(path), rows)
  task = cot_tasks.register_cot_task("pad_test_cot_rt", str(path), validation_fraction=0.1)
  assert seqio.get_mixture_or_task("pad_test_cot_rt") is task
  examples = list(task.get_dataset(None, split="validation", shuffle=False).as_numpy_iterator())
  assert len(examples) == 4
  vocab = task.output_features["targets"].vocabulary
  example = examples[0]
  decoded = vocab.decode(list(example["targets"][:-1]))
  assert cot_tasks.postprocess(decoded) == cot_tasks.postprocess(
      decoded, example={"answer": example["answer"]}, is_target=True)
  assert cot_tasks.accuracy_metric([2.0, 3.0, 4.0], [2.0, None, 5.0]) == {
      "accuracy": pytest.approx(1 / 3), "answered_rate": pytest.approx(2 / 3)}


def test_cot_reader_names_file_line_and_field(tmp_path):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"id": "a", "question": "q", "rationale": "r", "answer": 1}\n'
                  '{"id": "b", "question": "q", "answer": 2}\n')
  with pytest.raises(ValueError, match=r"bad.jsonl:2: field 'rationale'"):
    cot_tasks.read_cot(str(path))


@pytest.mark.parametrize("name", sorted(p.stem for p in experiments.EXPERIMENTS_DIR.glob("*.gin")
                                        if not p.stem.endswith("_common")))
def test_every_experiment_config_parses_and_validates(name):
  import gin
  gin.clear_config()
  user = [] if name.endswith("_tiny") else [
      "RUN_DIR = 'outputs/x'", "TEACHER_MODEL = 'm'", "INITIAL_CHECKPOINT_PATH = '/ckpt'"]
  runner.parse_gin([str(experiments.experiment_gin_file(name))], user,
                   [".", str(REPO / "gin_configs")])
  stage_configs = runner.validated_configs(configs.PipelineConfig())  # gin files exist, etc.
  train, decode = stage_configs["train"]["train"], stage_configs["decode"]["decode"]
  if name.startswith(("pad_codet5", "pad_refine_codet5", "pad_stepwise_codet5")):
    assert train.macros == {"INITIAL_CHECKPOINT_PATH": "/ckpt"}
    assert list(decode.benchmarks) == ["gsm8k", "asdiv", "svamp", "multiarith"]
  else:
    assert len(experiments.sweep_points(experiments.SweepConfig())) >= 2
  gin.clear_config()


def test_a_bad_point_fails_the_sweep_before_anything_runs(tmp_path):
  out = subprocess.run([sys.executable, "-m", "pad_jax.experiments", "--name=data_efficiency_tiny",
                        f"--gin.RUN_DIR='{tmp_path / 'exp'}'", "--gin.SweepConfig.values=[0.5, 2.0]"],
                       cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1] == (
      "pad_jax.experiments: TrainConfig.data_fraction: must be in (0, 1], got 2.0")
  assert "Traceback" not in out.stderr  # (above it: only TensorFlow's import-time notices)
  assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("name", ["stages_tiny", "stages_demo", "demo_stages", "demo_stages_decoder",
                                  "self_consistency_tiny", "cot_baseline_tiny"])
def test_every_point_of_a_named_sweep_validates(name):
  import gin
  files = [str(experiments.experiment_gin_file(name))]
  search = [".", str(REPO / "gin_configs")]
  gin.clear_config()
  runner.parse_gin(files, [], search)
  points = experiments.sweep_points(experiments.SweepConfig())
  for label, bindings in points.items():
    gin.clear_config()
    runner.parse_gin(files, experiments.binding_lines(bindings), search)
    point = configs.PipelineConfig()
    stage_configs = runner.validated_configs(point)
    if name == "stages_tiny" and label == "self_refine_r2":
      assert "refine" in point.stages
      assert "--refine_rounds=2" in stage_configs["decode"]["decode"].infer_flags()
    if name.startswith("stages") and label.startswith("stepwise"):
      assert "--decode=stepwise_beam" in stage_configs["decode"]["decode"].infer_flags()
    if name == "stages_demo":
      assert ("stepwise_verifier" in point.stages) == (label in ("stepwise_verifier",
                                                                   "stepwise_combined"))
      step_wise = label.startswith("stepwise")
      assert stage_configs["decode"]["decode"].set_limit("synthetic") == (300 if step_wise else 1000)
      if stage_configs["decode"]["decode"].benchmarks:
        assert stage_configs["decode"]["decode"].set_limit("gsm8k") == (20 if step_wise else 250)
  gin.clear_config()


def _plan(stages):
  return (configs.PipelineConfig(stages=tuple(stages)), {s: {"cfg": s} for s in stages})


def test_shared_stages_come_first_in_every_point_and_run_with_a_point_s_config():
  base = ["synthesize", "verify", "train", "decode", "score"]
  with_verifier = ["synthesize", "verify", "train", "stepwise_verifier", "decode", "score"]
  with_refine = ["synthesize", "verify", "train", "refine", "decode", "score"]
  shared = ["synthesize", "verify", "train", "stepwise_verifier"]
  plans = {"greedy": _plan(base), "verifier": _plan(with_verifier), "refine": _plan(with_refine)}
  configs_ = experiments._shared_configs(shared, plans)  # pylint: disable=protected-access
  assert list(configs_) == shared and configs_["stepwise_verifier"] == {"cfg": "stepwise_verifier"}
  with pytest.raises(ConfigError, match="no point runs \\['stepwise_verifier'\\]"):
    experiments._shared_configs(shared, {"greedy": _plan(base)})  # pylint: disable=protected-access
  with pytest.raises(ConfigError, match="must come first, in order, in every point's stages; "
                                        "point 'refine' runs"):
    experiments._shared_configs(["synthesize", "verify", "train", "decode"],  # pylint: disable=protected-access
                                {"refine": _plan(with_refine)})


def _scores(run_dir, name, correct):
  (run_dir / "score").mkdir(parents=True, exist_ok=True)
  (run_dir / "score" / f"{name}.jsonl").write_text("".join(
      json.dumps({"id": f"q{i}", "correct": c}) + "\n" for i, c in enumerate(correct)))


def test_paired_counts_against_the_baseline_on_the_same_questions(tmp_path):
  _scores(tmp_path / "greedy", "synthetic", [True, True, False, False, True])
  _scores(tmp_path / "sc", "synthetic", [True, False, True, True])  # q4 not scored here
  _scores(tmp_path / "sc", "gsm8k", [True])  # no baseline file: left out
  paired = experiments.paired_counts(tmp_path / "greedy", tmp_path / "sc")
  assert paired == {"synthetic": {"n": 4, "fixed": 2, "broken": 1, "correct": 3,
                                  "baseline_correct": 2}}
  rows = [{"label": "greedy", "bindings": {}, "train_examples": 1, "train_step": 1,
           "paired": experiments.paired_counts(tmp_path / "greedy", tmp_path / "greedy")},
          {"label": "sc", "bindings": {}, "train_examples": 1, "train_step": 1, "paired": paired}]
  cfg = experiments.SweepConfig(points={"greedy": {}, "sc": {}}, x_axis="value",
                                metrics=["synthetic_accuracy"], paired_with="greedy")
  experiments.write_results(tmp_path, "stages", cfg, rows)
  text = (tmp_path / "results.md").read_text()
  assert "Paired against `greedy`" in text and "| sc | +2 / -1: 75.0% vs 50.0% (n = 4) |" in text
  assert "| greedy | +" not in text


def test_results_table_columns_with_seconds_per_question(tmp_path):
  rows = [{"label": "greedy", "bindings": {"DecodeConfig.decode": "greedy"}, "train_examples": 8,
           "train_step": 10, "synthetic_accuracy": 0.5, "synthetic_seconds_per_question": 0.0421}]
  cfg = experiments.SweepConfig(points={"greedy": {}}, x_axis="value", metrics=["synthetic_accuracy"],
                                columns=["synthetic_accuracy", "synthetic_seconds_per_question",
                                         "gsm8k_accuracy"])
  experiments.write_results(tmp_path, "stages", cfg, rows)
  assert "| greedy | 8 | 10 | 50.0% | 0.042 | n/a |" in (tmp_path / "results.md").read_text()


def test_result_row_counts_the_examples_kept_within_the_lengths(tmp_path):
  report = {"train": {"examples": {"gold": 10, "synthetic": 5}, "step": 3,
                      "fit": {"gold.fit-96-128.json": {"source": "gold.jsonl", "kept": 4}}},
            "synthetic_accuracy": 0.5, "synthetic_n": 20}
  (tmp_path / "report.json").write_text(json.dumps(report))
  row = experiments._result_row("p", {}, tmp_path)  # pylint: disable=protected-access
  assert row["train_examples"] == 9 and row["synthetic_n"] == 20


def _gin_includes(path: pathlib.Path) -> list[str]:
  """The files a gin file includes (its `include '...'` lines)."""
  lines = [line.strip() for line in path.read_text().splitlines()]
  return [line.split(None, 1)[1].strip("'\"") for line in lines if line.startswith("include ")]


@pytest.mark.parametrize("path", sorted((REPO / "gin_configs" / "experiments").glob("*.gin"))
                         + sorted((REPO / "gin_configs" / "pipelines").glob("*.gin")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_experiment_files_include_at_most_one_level(path):
  """experiment -> pad_common.gin at most: every value is in one of two files."""
  for included in _gin_includes(path):
    target = REPO / "gin_configs" / included
    assert target.is_file(), f"{path}: include {included!r}: no such file under gin_configs/"
    assert not _gin_includes(target), (
        f"{path}: includes {included}, which includes {_gin_includes(target)}; include only "
        "files that include nothing (experiment -> common)")


def test_a_sweep_can_build_on_a_finished_run_directory(tmp_path, monkeypatch):
  """`SweepConfig.shared_dir` (make demo): the shared stages run (or are skipped) there, and
  every point links to them."""
  calls = []

  def run_pipeline(config, rerun=(), configs=None):
    calls.append((config.run_dir, tuple(config.stages), sorted(configs)))
    pathlib.Path(config.run_dir).mkdir(parents=True, exist_ok=True)
    (pathlib.Path(config.run_dir) / "report.json").write_text("{}")

  monkeypatch.setattr(runner, "run_pipeline", run_pipeline)
  monkeypatch.setattr(runner, "validated_configs",
                      lambda point, rerun=(): {s: {"cfg": s} for s in point.stages})
  demo = tmp_path / "demo"
  cfg = experiments.SweepConfig(out_dir=str(tmp_path / "stages"), shared_dir=str(demo),
                                points={"a": {}, "b": {}},
                                shared_stages=["synthesize", "verify", "train"])
  experiments.run_sweep(cfg, "demo_stages", lambda extra: None)
  assert calls[0] == (str(demo), ("synthesize", "verify", "train"), ["synthesize", "train", "verify"])
  assert [c[0] for c in calls[1:]] == [str(tmp_path / "stages" / p) for p in ("a", "b")]
  assert (tmp_path / "stages" / "a" / "train").resolve() == demo / "train"
  assert not (tmp_path / "stages" / "shared").exists()
