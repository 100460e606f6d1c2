"""Tests for pad_jax.pipeline: the real stages end to end at toy size, resume after kill -9.

The end-to-end test runs `python -m pad_jax.pipeline` on `gin_configs/pipelines/demo.gin`
with toy overrides (40 GSM8K questions for the gold teacher, 200 synthetic
problems, 30 t5x steps of the tiny model, 8 decoded examples per eval set),
kills the pipeline with SIGKILL once t5x has written its first checkpoint,
checks that nothing is left running, runs the same command again, and checks
that the finished stages were skipped, that training resumed from the
checkpoint, and that every stage's outputs are complete.
"""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from conftest import PY, REPO, run_module, subprocess_env
from pad_jax import checkpoints
from pad_jax.decoding import settings as settings_lib
from pad_jax.errors import ConfigError
from pad_jax.pipeline import configs
from pad_jax.pipeline import run_dir as run_dir_lib
from pad_jax.pipeline import runner
from pad_jax.pipeline import train_stage

TOY_T5X_RUN = REPO / "tests" / "testdata" / "toy_t5x_run.gin"

TOY_BINDINGS = [
    "SynthesizeConfig.limit = 40",
    "SynthesizeConfig.synthetic_train = 200",
    "SynthesizeConfig.synthetic_validation = 20",
    "SynthesizeConfig.synthetic_test = 8",
    "TrainConfig.train_steps = 30",
    f"TrainConfig.run_gin_files = ['runs/demo_train.gin', 'runs/drop_over_length.gin', '{TOY_T5X_RUN}']",
    "DecodeConfig.limit = 8",
    "DecodeConfig.limits = {}",  # demo.gin limits GSM8K to 300
    "DecodeConfig.max_decode_length = 64",
]


def _command(run_dir, *extra):
  args = [PY, "-m", "pad_jax.pipeline", "--gin_file=gin_configs/pipelines/demo.gin",
          f"--gin.RUN_DIR='{run_dir}'"]
  args += ["--gin_bindings=" + b for b in TOY_BINDINGS]
  return args + list(extra)


def _processes_mentioning(text):
  found = []
  for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
      continue
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
      continue
    if text in cmdline:
      found.append((int(pid), cmdline))
  return found


def _wait_for(predicate, proc, timeout_s, what):
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    if predicate():
      return
    if proc.poll() is not None:
      raise AssertionError(f"pipeline exited ({proc.returncode}) before {what}")
    time.sleep(0.5)
  raise AssertionError(f"timed out waiting for {what}")


def test_end_to_end_toy_run_resumes_after_kill(tmp_path):
  run_dir = tmp_path / "run"
  log1 = open(tmp_path / "first.log", "w")
  first = subprocess.Popen(_command(run_dir), cwd=REPO, env=subprocess_env(), stdout=log1,
                           stderr=subprocess.STDOUT)
  model_dir = run_dir / "train" / "model"
  try:
    _wait_for(lambda: checkpoints.latest_checkpoint(model_dir) is not None, first, 600,
              "t5x's first checkpoint")
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
    log1.close()
  killed_at = checkpoints.latest_checkpoint(model_dir)
  time.sleep(1.0)
  assert not _processes_mentioning(str(model_dir)), "t5x outlived the killed pipeline"
  run = run_dir_lib.RunDir(run_dir)
  assert run.is_done("synthesize") and run.is_done("verify")
  assert not run.is_done("train")
  before = {s: run.marker(s)["finished_at"] for s in ("synthesize", "verify")}

  second = subprocess.run(_command(run_dir), cwd=REPO, env=subprocess_env(), capture_output=True,
                          text=True, timeout=850)
  assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
  assert "synthesize: complete, skipped" in second.stderr
  assert "verify: complete, skipped" in second.stderr
  assert {s: run.marker(s)["finished_at"] for s in before} == before
  t5x_log = (run_dir / "train" / "t5x_train.log").read_text()
  resumed_from = checkpoints.checkpoint_step(killed_at)
  assert f"Starting main loop over steps {resumed_from}-30" in t5x_log
  _check_outputs(run_dir)
  # The terminal summary table names every stage and the headline numbers.
  for stage in configs.STAGES:
    assert stage in second.stdout
  assert "synthetic_accuracy" in second.stdout and "gsm8k_runnable_rate" in second.stdout

  third = subprocess.run(_command(run_dir), cwd=REPO, env=subprocess_env(), capture_output=True,
                         text=True, timeout=600)
  assert third.returncode == 0, third.stderr[-2000:]
  assert third.stderr.count("complete, skipped") == len(configs.STAGES)


def _check_outputs(run_dir):
  run = run_dir_lib.RunDir(run_dir)
  for stage in configs.STAGES:
    assert run.is_done(stage), stage
  # synthesize: teacher completions and synthetic splits.
  assert sum(1 for _ in open(run_dir / "synthesize/teacher/completions.jsonl")) >= 30
  for split, n in (("train", 200), ("validation", 20), ("test", 8)):
    assert sum(1 for _ in open(run_dir / f"synthesize/synthetic/{split}.jsonl")) == n
  # verify: kept programs of both sources, one report.
  verify_report = json.loads((run_dir / "verify/report.json").read_text())
  assert verify_report["kept_by_source"]["synthetic"] == 200
  assert verify_report["kept_by_source"]["gold"] >= 30
  assert verify_report["sources"]["teacher"]["status_counts"]
  # train: a checkpoint at the last step and the curves from TensorBoard.
  train = run.marker("train")["summary"]
  assert train["step"] == 30 and pathlib.Path(train["checkpoint_dir"]).is_dir()
  curves = json.loads((run_dir / "train/curves.json").read_text())
  loss = curves["train/loss_per_nonpadding_target_token"]
  assert [s for s, _ in loss][-1] == 30 and loss[-1][1] < loss[0][1]
  assert any(tag.startswith("training_eval/") for tag in curves)
  # decode + score: one row per example of each eval set.
  for name in ("synthetic", "gsm8k"):
    inputs = [json.loads(l) for l in open(run_dir / f"decode/{name}.inputs.jsonl")]
    predictions = [json.loads(l) for l in open(run_dir / f"decode/{name}.jsonl")]
    scored = [json.loads(l) for l in open(run_dir / f"score/{name}.jsonl")]
    assert len(inputs) == 8
    assert {r["id"] for r in predictions} == {r["id"] for r in inputs} == {r["id"] for r in scored}
    for row in scored:
      assert row["status"] in ("ok", "syntax_error", "runtime_error", "timeout", "memory_error",
                               "no_solution", "bad_return", "crashed", "forbidden_import")
      assert row["correct"] in (True, False)
  # report: headline keys, plots, markdown.
  report = json.loads((run_dir / "report.json").read_text())
  for key in ("synthetic_accuracy", "gsm8k_accuracy", "gsm8k_runnable_rate",
              "teacher_programs_kept", "stage_wall_s", "student_status_counts",
              "teacher_status_counts", "teacher_pass_rate_by_variant"):
    assert key in report, key
  assert 0 <= report["synthetic_accuracy"] <= 1 and 0 <= report["gsm8k_runnable_rate"] <= 1
  assert report["teacher_programs_kept"] == verify_report["kept_by_source"]["gold"]
  assert set(report["stage_wall_s"]) == {"synthesize", "verify", "train", "decode", "score"}
  # The demo's mixture: both sources, over-length examples dropped and counted.
  assert set(train["examples"]) == {"gold", "synthetic"}
  fits = {f["source"]: f for f in report["train"]["fit"].values()}
  assert fits["gold.jsonl"]["rows"] == train["examples"]["gold"]
  assert 0 < fits["gold.jsonl"]["kept"] <= fits["gold.jsonl"]["rows"]
  assert fits["synthetic.jsonl"]["kept"] == fits["synthetic.jsonl"]["rows"]
  for name in ("loss", "accuracy", "student_status", "teacher_pass_rate"):
    png = run_dir / report["plots"][name]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
  markdown = (run_dir / "report.md").read_text()
  assert "report/loss.png" in markdown and "gsm8k" in markdown


# ---------------------------------------------------------------------------
# Fast checks of the orchestration with the real (cheap) first stages.
# ---------------------------------------------------------------------------


def _toy_config(tmp_path, **overrides):
  import gin
  gin.clear_config()
  runner.parse_gin([], [
      f"PipelineConfig.run_dir = '{tmp_path / 'run'}'",
      "PipelineConfig.stages = ['synthesize', 'verify']",
      "SynthesizeConfig.teacher = 'none'",
      "SynthesizeConfig.synthetic_train = 30",
  ] + [f"{k} = {v!r}" for k, v in overrides.items()], [])
  return configs.PipelineConfig()


def test_complete_stages_are_skipped_and_rerun_invalidates_later_stages(tmp_path, capsys):
  cfg = _toy_config(tmp_path)
  first = runner.run_pipeline(cfg)
  assert first["verify"]["summary"]["kept"] == 30
  second = runner.run_pipeline(cfg)
  assert second["verify"]["finished_at"] == first["verify"]["finished_at"]
  assert "synthesize: complete, skipped" in capsys.readouterr().err
  # --rerun=synthesize runs synthesize and every later stage again.
  run = run_dir_lib.RunDir(cfg.run_dir)
  os.utime(run.marker_path("verify"), (0, 0))
  third = runner.run_pipeline(cfg, rerun=["synthesize"])
  assert run.marker_path("verify").stat().st_mtime > 0
  assert third["verify"]["summary"]["kept"] == 30


def test_changed_config_of_a_complete_stage_is_an_error(tmp_path):
  runner.run_pipeline(_toy_config(tmp_path))
  cfg = _toy_config(tmp_path, **{"SynthesizeConfig.synthetic_train": 40})
  with pytest.raises(runner.ConfigMismatchError, match=r"synthetic_train: 30 -> 40.*--rerun=synthesize"):
    runner.run_pipeline(cfg)


def test_marker_from_before_a_new_field_still_resumes(tmp_path, capsys):
  """A field added to a config class later, at its default, is no change."""
  cfg = _toy_config(tmp_path)
  runner.run_pipeline(cfg)
  run = run_dir_lib.RunDir(cfg.run_dir)
  marker_path = run.marker_path("synthesize")
  marker = json.loads(marker_path.read_text())
  del marker["config"]["synthesize"]["synthetic_seed"]  # as if the field were new
  marker_path.write_text(json.dumps(marker))
  runner.run_pipeline(cfg)
  assert "synthesize: complete, skipped" in capsys.readouterr().err
  # A new field set away from its default is a change.
  changed = _toy_config(tmp_path, **{"SynthesizeConfig.synthetic_seed": 7})
  with pytest.raises(runner.ConfigMismatchError, match=r"synthetic_seed: None -> 7"):
    runner.run_pipeline(changed)


def test_interrupted_stage_without_marker_runs_again(tmp_path):
  cfg = _toy_config(tmp_path)
  runner.run_pipeline(cfg)
  run = run_dir_lib.RunDir(cfg.run_dir)
  run.invalidate("verify")
  (run.stage_dir("verify") / "programs.jsonl").write_text('{"torn": ')
  markers = runner.run_pipeline(cfg)
  assert markers["verify"]["summary"]["kept"] == 30
  assert sum(1 for _ in open(run.stage_dir("verify") / "programs.jsonl")) == 30


def test_marker_is_written_atomically(tmp_path):
  run = run_dir_lib.RunDir(tmp_path)
  run.mark_done("x", wall_s=1.5, config={"a": 1}, summary={"b": 2})
  assert run.marker("x")["config"] == {"a": 1}
  assert [p.name for p in run.stage_dir("x").iterdir()] == ["DONE.json"]  # no temp file left


def test_started_stage_resumes_only_with_the_same_config_and_inputs(tmp_path):
  run = run_dir_lib.RunDir(tmp_path)
  run.start("train", config={"steps": 10}, upstream={"verify": "a"})
  (run.stage_dir("train") / "checkpoint_5").mkdir()
  run.start("train", config={"steps": 10}, upstream={"verify": "a"})  # interrupted: resume
  assert (run.stage_dir("train") / "checkpoint_5").exists()
  run.start("train", config={"steps": 10}, upstream={"verify": "b"})  # new inputs: start over
  assert not (run.stage_dir("train") / "checkpoint_5").exists()
  marker = run.mark_done("train", wall_s=1, config={}, summary={}, upstream={"verify": "b"})
  assert marker["upstream"] == {"verify": "b"} and len(marker["id"]) == 32


def test_training_data_fractions_are_nested_and_grouped_by_question():
  from pad_jax.data import synthetic
  records = synthetic.generate("train", 64, seed=3)
  records += [r.__class__(**{**r.__dict__, "sample": 1}) for r in records[:10]]  # 2 programs
  sizes = {}
  chosen = {}
  for fraction in (0.125, 0.5, 1.0):
    cfg = configs.TrainConfig(data_fraction=fraction)
    rows = train_stage.select_training_data(records, cfg)["synthetic"]
    chosen[fraction] = {r.id for r in rows}
    sizes[fraction] = len(chosen[fraction])
    for r in rows:  # every program of a chosen question is kept
      assert sum(x.id == r.id for x in rows) == sum(x.id == r.id for x in records)
  assert sizes == {0.125: 8, 0.5: 32, 1.0: 64}
  assert chosen[0.125] <= chosen[0.5] <= chosen[1.0]
  with pytest.raises(ConfigError, match=r"^TrainConfig.data_fraction: must be in \(0, 1\]"):
    configs.TrainConfig(data_fraction=0).validate()


def test_task_gin_registers_a_mixture_in_a_fresh_process(tmp_path):
  from pad_jax.data import programs, synthetic
  paths = {}
  for source, seed in (("synthetic", 0), ("gold", 1)):
    paths[source] = str(tmp_path / f"{source}.jsonl")
    programs.write_programs(paths[source], synthetic.generate("train", 40, seed=seed))
  cfg = configs.TrainConfig(source_rates={"synthetic": 3.0, "gold": 1.0}, vocabulary_macro=None)
  gin_text = train_stage.task_gin("pad_toy_mixture", paths, cfg)
  (tmp_path / "task.gin").write_text(gin_text)
  script = (
      "import gin, seqio\n"
      "@gin.configurable\n"
      "def show(name=gin.REQUIRED):\n"
      "  return name\n"
      f"gin.parse_config_files_and_bindings([{str(tmp_path / 'task.gin')!r}], "
      "['show.name = %MIXTURE_OR_TASK_NAME'])\n"
      "name = show()\n"
      "mixture = seqio.get_mixture_or_task(name)\n"
      "print(name, sorted((t.name, r) for t, r in zip(mixture.tasks, [mixture.get_rate(t) for t in mixture.tasks])))\n"
      "print(sum(1 for t in mixture.tasks for _ in t.get_dataset(\n"
      "    {'inputs': 64, 'targets': 256}, split='validation', shuffle=False).as_numpy_iterator()))\n")
  out = subprocess.run([PY, "-c", script], cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  first, count = out.stdout.strip().splitlines()[-2:]
  assert first == ("pad_toy_mixture [('pad_toy_mixture_gold', 1.0), "
                   "('pad_toy_mixture_synthetic', 3.0)]")
  assert int(count) == 4  # 5% of 40 questions from each source


def test_over_length_examples_are_dropped_and_counted(tmp_path):
  from pad_jax.data import programs, synthetic
  from tasks import pipeline_tasks
  vocabulary = synthetic.demo_vocabulary()
  records = synthetic.generate("train", 30, seed=0)
  path = str(tmp_path / "synthetic.jsonl")
  programs.write_programs(path, records)
  # `<s> question </s>` and `program </s>`: the lengths the task feeds t5x.
  inputs = [len(vocabulary.encode(r.question)) + 2 for r in records]
  targets = [len(vocabulary.encode(r.program)) + 1 for r in records]
  limits = {"inputs": sorted(inputs)[15], "targets": max(targets)}
  kept_path = pipeline_tasks.fitting_rows(path, limits, vocabulary)
  kept = programs.read_programs(kept_path)
  assert [r.id for r in kept] == [r.id for r, n in zip(records, inputs) if n <= limits["inputs"]]
  counts = pipeline_tasks.fit_counts(str(tmp_path))
  assert counts == {"synthetic.fit-%d-%d.json" % (limits["inputs"], limits["targets"]): {
      "source": "synthetic.jsonl", "max_lengths": limits, "rows": 30, "kept": len(kept),
      "inputs_too_long": 30 - len(kept), "targets_too_long": 0}}
  assert pipeline_tasks.fitting_rows(path, limits, vocabulary) == kept_path  # idempotent
  with pytest.raises(ValueError, match="no example fits"):
    pipeline_tasks.fitting_rows(path, {"inputs": 3, "targets": 3}, vocabulary)
  with pytest.raises(ValueError, match="task_format 'program'"):
    pipeline_tasks.program_task("pad_toy_cot_fit", path, task_format="cot", max_lengths=limits)


def test_progress_parses_t5x_log_lines():
  class Bar:
    def __init__(self):
      self.n, self.total, self.postfix, self.last_print_n = 0, None, {}, 0

    def update(self, k):
      self.n += k

    def refresh(self):
      pass

    def set_postfix(self, values, refresh=True):
      self.postfix = values

  bar = Bar()
  progress = train_stage._Progress(bar)  # pylint: disable=protected-access
  progress("I1125 12:05:11.1 1 train.py:607] Starting main loop over steps 10-30")
  assert (bar.n, bar.total) == (10, 30)
  progress("I1125 12:05:12.1 1 trainer.py:560] Training: step 17")
  assert bar.n == 17
  progress("I1125 12:05:13.1 1 logging_writer.py:48] [20] collection=train accuracy=0.5, "
           "loss=1200, loss_per_nonpadding_target_token=1.5")
  assert bar.n == 20 and bar.postfix == {"loss": "1.5", "accuracy": "0.5"}
  progress("I1125 12:05:14.1 1 logging_writer.py:48] [20] collection=training_eval/pad_x "
           "accuracy=0.25, loss=900")
  assert bar.postfix["val_accuracy"] == "0.25" and bar.postfix["val_loss"] == "900"


def test_cli_bad_gin_file_is_one_line_error():
  out = subprocess.run([PY, "-m", "pad_jax.pipeline", "--gin_file=no/such.gin"], cwd=REPO,
                       env=subprocess_env(), capture_output=True, text=True, timeout=600)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1].startswith("pad_jax.pipeline: bad config:")
  assert "no/such.gin" in out.stderr


def test_cli_unknown_configurable_names_the_binding():
  out = subprocess.run([PY, "-m", "pad_jax.pipeline", "--gin_file=gin_configs/pipelines/demo.gin",
                        "--gin.TrainConfig.no_such_field=1"], cwd=REPO, env=subprocess_env(),
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 2
  assert "no_such_field" in out.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("binding, message", [
    ("ScoreConfig.answer_format = 'txt'",
     "ScoreConfig.answer_format: must be one of ('program', 'text'), got 'txt'"),
    ("ExecLimits.timeout_s = -1.0", "ExecLimits.timeout_s: must be a number > 0"),
    ("DecodeConfig.benchmarks = ['gsm9k']", "DecodeConfig.benchmarks: unknown ['gsm9k']"),
    # A decode setting infer would refuse (DecodeSettings' checks) stops the
    # pipeline here, not in the decode stage's child.
    ("DecodeConfig.num_decodes = 4", "DecodeConfig.num_decodes: must be 1 with decode 'greedy'"),
])
def test_cli_bad_setting_in_a_late_stage_fails_before_the_first_stage(tmp_path, binding, message):
  run_dir = tmp_path / "run"
  out = subprocess.run([PY, "-m", "pad_jax.pipeline", "--gin_file=gin_configs/pipelines/demo.gin",
                        f"--gin.RUN_DIR='{run_dir}'", f"--gin_bindings={binding}"], cwd=REPO,
                       env=subprocess_env(), capture_output=True, text=True, timeout=600)
  assert out.returncode == 2
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith(f"pad_jax.pipeline: bad config: {message}"), out.stderr
  assert out.stderr.count("pad_jax.pipeline:") == 1  # one line of ours
  assert "Traceback" not in out.stderr  # (above it: only TensorFlow's import-time notices)
  assert not run_dir.exists()  # nothing ran, not even the first stage


# ---------------------------------------------------------------------------
# Stages III and IV in the pipeline: configs checked up front.
# ---------------------------------------------------------------------------


def test_stage_order_and_the_optional_refine_stage():
  assert "refine" not in configs.STAGES and "refine" in configs.ALL_STAGES
  configs.PipelineConfig(stages=("synthesize", "verify", "train", "refine", "decode")).validate()
  with pytest.raises(ConfigError, match=r"^PipelineConfig.stages: must be stages out of .* in that order"):
    configs.PipelineConfig(stages=("train", "verify")).validate()
  with pytest.raises(ConfigError, match="has 'refine' without 'train'"):
    configs.PipelineConfig(stages=("refine", "decode")).validate()


def test_decode_config_stepwise_beam_and_refine_rounds():
  stepwise = configs.DecodeConfig(decode="stepwise_beam", beam_size=3, step_candidates=5, top_k=8)
  stepwise.validate()
  assert stepwise.infer_flags() == [
      "--decode=stepwise_beam", "--num_decodes=1", "--beam_size=3", "--alpha=0.6",
      "--temperature=0.7", "--top_k=8", "--max_decode_length=256", "--max_input_length=512",
      "--batch_size=8", "--seed=0", "--step_candidates=5", "--step_verifier_weight=0.5",
      "--step_grounding=False", "--refine_rounds=0"]
  refine = configs.DecodeConfig(refine_rounds=2, max_input_length=256)
  refine.validate()
  assert "--refine_rounds=2" in refine.infer_flags()
  assert "--max_input_length=256" in refine.infer_flags()
  for kwargs, message in [
      (dict(decode="stepwise_beam", num_decodes=2), "DecodeConfig.num_decodes: must be 1 with"),
      (dict(decode="stepwise_beam", step_candidates=0),
       "DecodeConfig.step_candidates: must be an integer >= 1"),
      (dict(step_verifier="/no/such"), "DecodeConfig.step_verifier: is only for decode"),
      (dict(decode="stepwise_beam", step_verifier="/no/such"),
       "DecodeConfig.step_verifier: does not exist, got '/no/such'"),
      (dict(decode="sample", num_decodes=5, refine_rounds=1), "DecodeConfig.refine_rounds: refines one"),
      (dict(decode="stepwise_beam", refine_rounds=1), "DecodeConfig.refine_rounds: refines one"),
      (dict(refine_rounds=-1), "DecodeConfig.refine_rounds: must be an integer >= 0"),
      (dict(decode="beem"), "DecodeConfig.decode: must be one of"),
      (dict(decode="greedy", num_decodes=4), "DecodeConfig.num_decodes: must be 1 with decode 'greedy'"),
      (dict(decode="beam", beam_size=2, num_decodes=3), "DecodeConfig.num_decodes: must be <= beam_size"),
      (dict(benchmarks=[], synthetic=False), "DecodeConfig.synthetic: is False"),
      (dict(limits={"synthetic": 0}), "DecodeConfig.limits: values must be integers > 0"),
      (dict(limits={"svamp": 10}), "DecodeConfig.limits: names a set that is not decoded; "
                                   "the sets are \\['synthetic', 'gsm8k'\\]"),
  ]:
    with pytest.raises(ConfigError, match="^" + message):
      configs.DecodeConfig(**kwargs).validate()


def test_decode_config_is_the_decode_settings_plus_what_to_decode():
  """One settings type: DecodeConfig's decode fields are DecodeSettings', same defaults."""
  settings_fields = {f.name: f.default for f in dataclasses.fields(settings_lib.DecodeSettings)}
  config_fields = {f.name: f.default for f in dataclasses.fields(configs.DecodeConfig)}
  assert {k: config_fields[k] for k in settings_fields} == settings_fields
  assert set(config_fields) - set(settings_fields) == {
      "benchmarks", "split", "synthetic", "limit", "limits", "time_each_set"}
  # The child's flags carry every setting and nothing of the pipeline's own.
  flags = configs.DecodeConfig(limit=3, decode="sample", num_decodes=5).infer_flags()
  assert [f.split("=")[0][2:] for f in flags] == [
      k for k in settings_fields if k != "step_verifier"]
  assert "--num_decodes=5" in flags and not any("limit" in f for f in flags)
  per_set = configs.DecodeConfig(limit=3, limits={"synthetic": 10})
  assert per_set.set_limit("synthetic") == 10 and per_set.set_limit("gsm8k") == 3
  assert configs.DecodeConfig().set_limit("gsm8k") is None


def test_refine_config_is_checked_before_the_first_stage():
  configs.RefineConfig().validate()  # runs/pad_refine.gin exists
  for kwargs, message in [
      (dict(operators=["swap_everything"]), "RefineConfig.operators: must be operators out of"),
      (dict(per_operator=0, student_failures=False), "RefineConfig.per_operator: is 0 and"),
      (dict(limit=0), "RefineConfig.limit: must be None or > 0"),
      (dict(run_gin_files=["runs/no_such.gin"]), "TrainConfig: gin file 'runs/no_such.gin' not found"),
  ]:
    with pytest.raises(ConfigError, match="^" + message):
      configs.RefineConfig(**kwargs).validate()
  stage = configs.stage_configs(["refine"])["refine"]
  assert set(stage) == {"refine", "train", "limits"}


def test_refine_stage_commands(tmp_path):
  from pad_jax.execution.limits import ExecLimits
  from pad_jax.pipeline import refine_stage
  cfg = configs.RefineConfig(operators=["wrong_operator", "dropped_step"], per_operator=2,
                             batch_size=4, max_decode_length=64)
  trained = {"checkpoint_dir": "/m/checkpoint_30", "model_gin_files": ["/g/model0_tiny.gin"]}
  command = refine_stage.refine_data_command(
      cfg, {"limits": ExecLimits(timeout_s=2.0, workers=1)}, tmp_path / "s.jsonl", tmp_path / "d",
      trained)
  assert command[1:3] == ["-m", "pad_jax.refine"]
  for flag in ("--operators=wrong_operator,dropped_step", "--per_operator=2",
               "--checkpoint_dir=/m/checkpoint_30", "--gin_file=/g/model0_tiny.gin",
               "--batch_size=4", "--max_decode_length=64", "--timeout_s=2.0", "--workers=1",
               "--mode=tolerance"):
    assert flag in command, flag
  no_student = refine_stage.refine_data_command(
      configs.RefineConfig(student_failures=False), {"limits": ExecLimits()}, tmp_path / "s.jsonl",
      tmp_path / "d", trained)
  assert not any(f.startswith("--checkpoint_dir") for f in no_student)
  text = refine_stage.refine_gin(pathlib.Path("/r/refine.jsonl"), pathlib.Path("/p.jsonl"), "/m/c")
  assert 'REFINE_DATA = "/r/refine.jsonl"' in text and 'INITIAL_CHECKPOINT_PATH = "/m/c"' in text


def test_decode_stage_reads_infers_seconds_over_resumed_runs(tmp_path):
  from pad_jax.pipeline import decode_stage
  log = tmp_path / "infer.log"
  log.write_text('I1130 noise\n{"decoded": 5, "seconds": 1.5, "total": 9}\nkilled\n'
                 '{"decoded": 4, "seconds": 2.25, "total": 9, "refine": {"rounds": 1}}\n')
  assert decode_stage.infer_summary(log) == {"decoded": 4, "seconds": 3.75, "total": 9,
                                             "refine": {"rounds": 1}}
