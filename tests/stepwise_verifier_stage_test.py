"""The pipeline's stepwise_verifier stage: its config checked up front, its resume, its wiring.

The children (`python -m pad_jax.stepwise.verifier_data`, `python -m
t5x.train`, `python -m pad_jax.infer`) are replaced by fakes that honour their
files and resume rules; `tests/stepwise_search_test.py` runs the real builder
and `t5x.train` with `runs/step_verifier.gin` on a tiny student.
"""

import json
import pathlib
import re
import subprocess

import gin
import pytest
import tqdm

from conftest import PY, REPO, subprocess_env
from pad_jax import jsonl
from pad_jax.data.programs import ProgramRecord, write_programs
from pad_jax.decoding import decoder as decoder_lib
from pad_jax.errors import ConfigError
from pad_jax.execution import limits as limits_lib
from pad_jax.pipeline import child
from pad_jax.pipeline import configs
from pad_jax.pipeline import decode_stage
from pad_jax.pipeline import run_dir as run_dir_lib
from pad_jax.pipeline import stepwise_verifier_stage as stage
from pad_jax.pipeline.stage import StageContext

STAGES = ("synthesize", "verify", "train", "stepwise_verifier", "decode", "score", "report")


# ---------------------------------------------------------------------------
# Config: checked before the first stage.
# ---------------------------------------------------------------------------


def test_the_stage_is_optional_and_placed_before_decode():
  assert "stepwise_verifier" in configs.ALL_STAGES and "stepwise_verifier" not in configs.STAGES
  configs.PipelineConfig(stages=STAGES).validate()
  configs.PipelineConfig(stages=("train", "refine", "stepwise_verifier", "decode")).validate()
  with pytest.raises(ConfigError, match=r"^PipelineConfig.stages: must be stages out of"):
    configs.PipelineConfig(stages=("train", "decode", "stepwise_verifier")).validate()
  with pytest.raises(ConfigError, match="has 'stepwise_verifier' without 'train'"):
    configs.PipelineConfig(stages=("stepwise_verifier", "decode")).validate()


@pytest.mark.parametrize("changes, message", [
    (dict(completions=0), "completions: must be >= 1, got 0"),
    (dict(samples=-1), "samples: must be >= 0"),
    (dict(temperature=0.0), "temperature: must be > 0"),
    (dict(limit=0), "limit: must be None or > 0"),
    (dict(batch_size=0), "batch_size: must be >= 1"),
    (dict(train_steps=0), "train_steps: must be None or > 0"),
    (dict(macros={"not a macro": 1}), "macros: keys must be gin macro names"),
    (dict(run_gin_files=[]), "run_gin_files: must name at least one"),
    (dict(from_student=True, model_gin_files=["models/tiny.gin"]),
     "from_student: needs model_gin_files None"),
    (dict(from_student=True, macros={"INITIAL_CHECKPOINT_PATH": "/c"}),
     "from_student: needs model_gin_files None"),
])
def test_each_check_names_its_field(changes, message):
  with pytest.raises(ConfigError, match="^StepwiseVerifierConfig." + message):
    configs.StepwiseVerifierConfig(**changes).validate()


def test_from_student_starts_the_verifier_from_the_student_checkpoint(tmp_path):
  data, checkpoint = tmp_path / "verifier.jsonl", tmp_path / "model" / "checkpoint_7"
  gin.clear_config()
  gin.parse_config(stage.verifier_gin(data, str(checkpoint)))
  assert gin.query_parameter("%INITIAL_CHECKPOINT_PATH") == str(checkpoint)
  assert gin.query_parameter("%VERIFIER_DATA") == str(data)
  # The student's step counter is not restored: TRAIN_STEPS counts the verifier's own steps.
  assert ("state/step", None) in gin.query_parameter(
      "init/utils.RestoreCheckpointConfig.assignment_map")
  gin.clear_config()
  assert "INITIAL_CHECKPOINT_PATH" not in stage.verifier_gin(data)


def test_gin_files_must_exist():
  configs.StepwiseVerifierConfig().validate()  # runs/step_verifier.gin
  configs.StepwiseVerifierConfig(model_gin_files=["models/tiny.gin"]).validate()
  for changes in (dict(run_gin_files=["runs/no_such.gin"]),
                  dict(model_gin_files=["models/no_such.gin"])):
    with pytest.raises(ConfigError, match="gin file .*no_such.gin' not found"):
      configs.StepwiseVerifierConfig(**changes).validate()


@pytest.fixture
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.mark.parametrize("bindings, message", [
    ([], "DecodeConfig.decode: must be 'stepwise_beam' with the stepwise_verifier stage"),
    (["DecodeConfig.decode = 'stepwise_beam'", "DecodeConfig.step_verifier_weight = 0.0"],
     "DecodeConfig.step_verifier_weight: is 0 with the stepwise_verifier stage"),
    (["DecodeConfig.decode = 'stepwise_beam'", "DecodeConfig.step_verifier_weight = 2.0"],
     "DecodeConfig.step_verifier_weight: must be a number in [0, 1]"),
])
def test_the_decode_config_must_use_the_verifier(clean_gin, tmp_path, bindings, message):
  gin.parse_config(bindings)
  with pytest.raises(ConfigError) as error:
    configs.stage_configs(["train", "stepwise_verifier", "decode"])
  assert str(error.value).startswith(message), error.value
  gin.clear_config()
  gin.parse_config(["DecodeConfig.decode = 'stepwise_beam'",
                    f"DecodeConfig.step_verifier = '{tmp_path}'"])
  with pytest.raises(ConfigError, match="^DecodeConfig.step_verifier: must be None with the"):
    configs.stage_configs(["train", "stepwise_verifier", "decode"])
  gin.clear_config()
  gin.parse_config(["DecodeConfig.decode = 'stepwise_beam'"])
  parts = configs.stage_configs(["train", "stepwise_verifier", "decode"])
  assert set(parts["stepwise_verifier"]) == {"stepwise_verifier", "train", "limits"}


DECODER = "TrainConfig.model_gin_files = ['models/tiny_decoder.gin']"


@pytest.mark.parametrize("changes, message", [
    (["StepwiseVerifierConfig.from_student = True"],
     r"StepwiseVerifierConfig.from_student: must be False with a decoder-only student "
     r"\(TrainConfig.model_gin_files \['models/tiny_decoder.gin'\]: DecoderOnlyModel\): "
     r"the T5 verifier cannot start from its checkpoint; set "
     r"StepwiseVerifierConfig.from_student = False and give the verifier model files of its own"),
    ([], r"StepwiseVerifierConfig.model_gin_files: must name the verifier's own "
         r"\(encoder-decoder\) model files with a decoder-only student"),
])
def test_a_decoder_only_student_needs_a_verifier_of_its_own(clean_gin, changes, message):
  gin.parse_config([DECODER, "DecodeConfig.decode = 'stepwise_beam'", *changes])
  with pytest.raises(ConfigError) as error:
    configs.stage_configs(["train", "stepwise_verifier", "decode"])
  assert re.match(message, str(error.value)), error.value
  assert "\n" not in str(error.value)
  # What the message says to do instead is accepted.
  gin.parse_config(["StepwiseVerifierConfig.from_student = False",
                    "StepwiseVerifierConfig.model_gin_files = ['models/tiny.gin']"])
  configs.stage_configs(["train", "stepwise_verifier", "decode"])
  # A T5 student may start the verifier from its own checkpoint.
  t5 = configs.TrainConfig(model_gin_files=["models/tiny.gin"])
  configs.StepwiseVerifierConfig(from_student=True).check_student(t5)


@pytest.mark.parametrize("binding, message", [
    ("StepwiseVerifierConfig.completions = 0",
     "StepwiseVerifierConfig.completions: must be >= 1, got 0"),
    ([DECODER, "StepwiseVerifierConfig.from_student = True"],
     "StepwiseVerifierConfig.from_student: must be False with a decoder-only student"),
    ("DecodeConfig.decode = 'greedy'",
     "DecodeConfig.decode: must be 'stepwise_beam' with the stepwise_verifier stage"),
])
def test_cli_bad_config_fails_before_the_first_stage(tmp_path, binding, message):
  run_dir = tmp_path / "run"
  out = subprocess.run(
      [PY, "-m", "pad_jax.pipeline", "--gin_file=gin_configs/pipelines/demo.gin",
       f"--gin.RUN_DIR='{run_dir}'", f"--gin_bindings=PipelineConfig.stages={list(STAGES)}",
       "--gin_bindings=DecodeConfig.decode = 'stepwise_beam'",
       *[f"--gin_bindings={b}" for b in ([binding] if isinstance(binding, str) else binding)]],
      cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=600)
  assert out.returncode == 2, out.stderr[-3000:]
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith(f"pad_jax.pipeline: bad config: {message}"), out.stderr[-3000:]
  assert out.stderr.count("pad_jax.pipeline:") == 1
  assert "Traceback" not in out.stderr
  assert not run_dir.exists()


# ---------------------------------------------------------------------------
# The stage, with fake children: commands, resume, the decode stage's flag.
# ---------------------------------------------------------------------------


def _flags(cmd):
  out = {}
  for arg in cmd[3:]:
    name, _, value = arg.partition("=")
    out.setdefault(name.lstrip("-"), []).append(value)
  return out


class _FakeChildren:
  """verifier_data (optionally killed after `kill_after` rows), t5x.train, infer."""

  def __init__(self):
    self.calls, self.kill_after = [], None

  def __call__(self, cmd, log_path, *, env=None, on_line=None, poll=None,
               poll_interval_s=1.0, cwd=None):
    del env, on_line, poll_interval_s, cwd
    self.calls.append(list(cmd))
    flags = _flags(cmd)
    if cmd[2] == "pad_jax.stepwise.verifier_data":
      self._verifier_data(flags["input"][0], flags["output"][0])
    elif cmd[2] == "t5x.train":
      model_dir = json.loads(flags["gin.MODEL_DIR"][0])
      pathlib.Path(model_dir, "checkpoint_3").mkdir(parents=True, exist_ok=True)
    elif cmd[2] == "pad_jax.infer":
      rows = jsonl.read_rows(flags["input"][0])
      jsonl.write_rows(flags["output"][0], [{**r, "prediction": "x"} for r in rows])
      pathlib.Path(log_path).write_text('{"seconds": 1.5, "decoded": 1}\n')
    if poll:
      poll()

  def _verifier_data(self, input_path, output):
    done = decoder_lib.read_done_ids(output)  # the builder's resume rule
    todo = [r for r in decoder_lib.read_inputs(input_path) if r["id"] not in done]
    with jsonl.Appender(output) as out:
      for n, row in enumerate(todo):
        if self.kill_after is not None and n == self.kill_after:
          raise child.ChildError("killed")
        out.append_many([{**{k: row[k] for k in ("id", "question", "answer")}, "prefixes": [
            {"prefix": "def solution():\n    a = 3\n", "label": "correct"},
            {"prefix": "def solution():\n    a = 4\n", "label": "wrong"}]}])


def _record(qid, source, program="def solution():\n    return 6\n"):
  return ProgramRecord(id=qid, question=f"question {qid}", program=program, answer=6.0,
                       teacher=source, prompt_variant=0, sample=0)


@pytest.fixture
def run(tmp_path):
  run = run_dir_lib.RunDir(tmp_path / "run")
  data = run.stage_dir("train") / "data"
  data.mkdir(parents=True)
  write_programs(data / "gold.jsonl", [_record("q1", "gold"), _record("q1", "gold"),
                                       _record("q2", "gold"), _record("q3", "gold")])
  write_programs(data / "synthetic.jsonl", [_record("s1", "synthetic"),
                                            _record("s2", "synthetic")])
  return run


def _context(run, name):
  return StageContext(run=run, stage_dir=run.stage_dir(name),
                      bar=lambda total=None, unit="it", desc_suffix=None: tqdm.tqdm(
                          total=total, disable=True))


STUDENT = {"checkpoint_dir": "/student/checkpoint_100", "model_gin_files": ["/m/tiny.gin"],
           "gin_search_paths": ["/gin"], "vocab_dir": "/vocab"}


def test_question_rows_one_per_question_limited_per_source(run):
  rows = stage.question_rows(run.stage_dir("train"), configs.StepwiseVerifierConfig(limit=2))
  assert [r["id"] for r in rows] == ["q1", "q2", "s1", "s2"]
  assert set(rows[0]) == {"id", "question", "answer", "program"}
  only = stage.question_rows(run.stage_dir("train"),
                             configs.StepwiseVerifierConfig(sources=["synthetic"]))
  assert [r["id"] for r in only] == ["s1", "s2"]
  with pytest.raises(stage.StageError, match=r"StepwiseVerifierConfig.sources=\['openai'\]"):
    stage.question_rows(run.stage_dir("train"), configs.StepwiseVerifierConfig(sources=["openai"]))


def test_the_stage_resumes_and_the_decode_stage_uses_its_verifier(run, monkeypatch):
  fake = _FakeChildren()
  monkeypatch.setattr(child, "run_child", fake)
  cfg = configs.StepwiseVerifierConfig(samples=2, completions=3, train_steps=3,
                                       macros={"INITIAL_CHECKPOINT_PATH": "/ckpt"})
  parts = {"stepwise_verifier": cfg, "train": configs.TrainConfig(),
           "limits": limits_lib.ExecLimits(workers=1)}
  upstream = {"train": {"summary": STUDENT}}
  ctx = _context(run, "stepwise_verifier")

  fake.kill_after = 2  # killed while labelling the 3rd of 5 questions
  with pytest.raises(child.ChildError):
    stage.run(ctx, parts, upstream)
  data = ctx.path(stage.DATA_FILE)
  assert len(jsonl.read_rows(data)) == 2
  questions = ctx.path("questions.jsonl").read_bytes()

  fake.kill_after = None
  summary = stage.run(ctx, parts, upstream)
  assert ctx.path("questions.jsonl").read_bytes() == questions  # the same questions again
  rows = jsonl.read_rows(data)
  assert [r["id"] for r in rows] == ["q1", "q2", "q3", "s1", "s2"]  # none twice
  assert (summary["questions"], summary["prefixes"], summary["correct"]) == (5, 10, 5)
  assert summary["checkpoint_dir"] == str(ctx.path("model", "checkpoint_3"))
  assert summary["step"] == 3 and summary["student_checkpoint"] == STUDENT["checkpoint_dir"]

  builder = _flags(fake.calls[1])
  assert fake.calls[1][2] == "pad_jax.stepwise.verifier_data"
  assert builder["checkpoint_dir"] == [STUDENT["checkpoint_dir"]]
  assert builder["gin_file"] == STUDENT["model_gin_files"]
  assert builder["vocab_dir"] == ["/vocab"] and builder["gin_search_paths"] == ["/gin"]
  assert (builder["samples"], builder["completions"]) == (["2"], ["3"])
  assert builder["workers"] == ["1"]  # the executor's limits
  train = _flags(fake.calls[2])
  assert fake.calls[2][2] == "t5x.train"
  run_file = str(ctx.path("gin", "run0_step_verifier.gin"))
  assert train["gin_file"] == STUDENT["model_gin_files"] + [run_file,
                                                            str(ctx.path("verifier.gin"))]
  assert pathlib.Path(run_file).read_text() == (REPO / "gin_configs/runs/step_verifier.gin").read_text()
  assert train["gin.TRAIN_STEPS"] == ["3"] and train["gin.INITIAL_CHECKPOINT_PATH"] == ["'/ckpt'"]
  assert f"VERIFIER_DATA = {json.dumps(str(data))}" in ctx.path("verifier.gin").read_text()

  # The decode stage gives infer the verifier (and the weight) as flags.
  synthetic = run.stage_dir("synthesize") / "synthetic"
  synthetic.mkdir(parents=True)
  write_programs(synthetic / "test.jsonl", [_record("t1", "synthetic")])
  decode = configs.DecodeConfig(decode="stepwise_beam", benchmarks=[], synthetic=True,
                                step_verifier_weight=0.25)
  decoded = decode_stage.run(_context(run, "decode"), {"decode": decode}, {
      **upstream, "stepwise_verifier": {"summary": summary}})
  infer = _flags(fake.calls[-1])
  assert infer["step_verifier"] == [summary["checkpoint_dir"]]
  assert infer["step_verifier_weight"] == ["0.25"] and infer["decode"] == ["stepwise_beam"]
  assert infer["checkpoint_dir"] == [STUDENT["checkpoint_dir"]]
  assert decoded["step_verifier"] == summary["checkpoint_dir"]
