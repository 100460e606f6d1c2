"""Self-refinement (stage III) with a decoder-only student (models/tiny_decoder.gin).

`refine_mixture(decoder_only=True)` lays the refinement mixture out as a
prefix LM (tasks/decoder_tasks.py): the prompt is
`prompt_text(refinement input)`, what `pad_jax.infer --refine_rounds` gives
such a student. By hand, `python -m t5x.train` with models/tiny_decoder.gin +
runs/pad_refine.gin gets it from the model file, which binds
`refine_mixture.decoder_only` (pad_refine.gin's header, no extra flag); the
pipeline's refine stage also writes that binding
into its round's refine.gin (tests/pipeline_decoder_only_test.py
`test_refine_gin_layout`; the stage end to end is the slow test here).
"""

import json
import sys

import pytest
import seqio
import tqdm
from t5x import models

from pad_jax import checkpoints
from pad_jax.data import programs as programs_lib
from pad_jax.data import refine_inputs
from pad_jax.data import synthetic
from pad_jax.execution.limits import ExecLimits
from pad_jax.pipeline import configs
from pad_jax.pipeline import refine_stage
from pad_jax.pipeline import run_dir as run_dir_lib
from pad_jax.pipeline.stage import StageContext
from tasks import decoder_tasks
from tasks import refine_tasks
import train_testlib as tl

DECODER_GIN = "models/tiny_decoder.gin"
LENGTHS = {"inputs": 256, "targets": 128}
CPU_ENV = {"JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}


def write_refine_rows(path, records):
  """One refinement row per program: a faulty copy, its feedback, the program as target."""
  rows = [{"id": f"{r.id}-m", "question_id": r.id, "question": r.question,
           "program": r.program.replace("return ", "return missing + ", 1),
           "feedback": "runtime_error: NameError: name 'missing' is not defined",
           "target": r.program, "answer": r.answer, "source": "mutation:undefined_name",
           "status": "runtime_error"} for r in records]
  path.write_text("".join(json.dumps(row) + "\n" for row in rows))
  return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("refine_decoder")
  programs = tl.write_program_dataset(tmp / "programs.jsonl", n=40)
  refine = write_refine_rows(tmp / "refine.jsonl", programs_lib.read_programs(programs))
  return {"tmp": tmp, "programs": programs, "refine": refine}


def _converted(task_name, converter):
  task = seqio.get_mixture_or_task(task_name)
  ds = task.get_dataset(LENGTHS, split="train", shuffle=False)
  return list(converter(ds, LENGTHS).as_numpy_iterator())


def test_the_decoder_only_mixture_is_a_prefix_lm_on_the_refinement_prompt(data):
  vocab = synthetic.demo_vocabulary()
  name = refine_tasks.refine_mixture(str(data["refine"]), str(data["programs"]),
                                     name="refine_decoder_test", vocabulary=vocab,
                                     max_input_tokens=LENGTHS["inputs"], decoder_only=True)
  first = refine_inputs.read_rows(data["refine"])[0]
  prompt = vocab.encode(decoder_tasks.prompt_text(refine_inputs.refinement_input(
      first["question"], first["program"], first["feedback"], vocab, LENGTHS["inputs"])))
  program = list(vocab.encode(first["target"])) + [vocab.eos_id]
  # What t5x's DecoderOnlyModel feeds its network (its FEATURE_CONVERTER_CLS).
  rows = _converted(f"{name}_refinement", models.DecoderOnlyModel.FEATURE_CONVERTER_CLS(
      pack=False))
  assert {"decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights",
          "decoder_causal_attention"} <= set(rows[0])
  row = next(r for r in rows if list(r["decoder_target_tokens"][:len(prompt)]) == prompt)
  size = len(prompt) + len(program)
  assert list(row["decoder_target_tokens"][:size]) == prompt + program
  assert list(row["decoder_input_tokens"][:size + 1]) == [0] + prompt + program
  # The prompt (and the position after it) attends both ways; the program carries the loss.
  assert list(row["decoder_causal_attention"][:size]) == [1] * (len(prompt) + 1) + [0] * (
      len(program) - 1)
  assert list(row["decoder_loss_weights"][:size]) == [0] * len(prompt) + [1] * len(program)
  # The mixture's other member, the original programs, has the same layout.
  assert "decoder_causal_attention" in _converted(
      refine_tasks.programs_task_of(name), seqio.PrefixLMFeatureConverter(pack=False))[0]
  # The encoder-decoder layout of the same rows: `<s> input </s>`, no newline.
  t5 = refine_tasks.refine_mixture(str(data["refine"]), str(data["programs"]),
                                   name="refine_t5_test", vocabulary=vocab,
                                   max_input_tokens=LENGTHS["inputs"])
  ds = seqio.get_mixture_or_task(f"{t5}_refinement").get_dataset(LENGTHS, split="train",
                                                                 shuffle=False)
  assert all(int(ex["inputs"][-1]) == vocab.eos_id for ex in ds.as_numpy_iterator())


@pytest.fixture(scope="module")
def hand_run(data):
  """`python -m t5x.train` as pad_refine.gin's header says (no layout flag), 2 steps."""
  model_dir = data["tmp"] / "run"
  result = tl.run([
      sys.executable, "-m", "t5x.train", "--gin_search_paths=gin_configs",
      f"--gin_file={DECODER_GIN}", "--gin_file=runs/pad_refine.gin",
      f"--gin.MODEL_DIR='{model_dir}'", "--gin.INITIAL_CHECKPOINT_PATH=None",
      f"--gin.REFINE_DATA='{data['refine']}'", f"--gin.PROGRAMS_DATA='{data['programs']}'",
      "--gin.TRAIN_STEPS=2", "--gin.EVAL_PERIOD=2", "--gin.EVAL_STEPS=1",
      "--gin.EVALUATOR_NUM_EXAMPLES=2", "--gin.WARMUP_STEPS=1", "--gin.BATCH_SIZE=4",
      f"--gin.TASK_FEATURE_LENGTHS={LENGTHS}"], tl.subprocess_env(data["programs"]))
  assert result.returncode == 0, result.stderr[-4000:]
  return model_dir


def test_pad_refine_gin_trains_a_decoder_only_student_by_hand(hand_run):
  assert checkpoints.checkpoint_steps(hand_run)[-1] == 2
  saved = (hand_run / "config.gin").read_text()
  assert "MODEL = @models.DecoderOnlyModel()" in saved
  assert "\nfrom tasks import refine_tasks\n" in saved
  assert "\nrefine_tasks.refine_mixture.decoder_only = True\n" in saved
  assert "\nrefine_tasks.refine_mixture.vocabulary = %VOCABULARY\n" in saved
  params = tl.load_params(hand_run / "checkpoint_2")
  assert not any("encoder" in k for k in params), sorted(params)[:5]
  truncation = json.loads((hand_run / "truncation-pad_refine-train.json").read_text())
  assert truncation["truncated"]["inputs"] == 0 and truncation["examples"] > 40


@pytest.mark.slow  # ~4 min on 2 shared cores: two t5x runs and the student's decodes
def test_the_refine_stage_continues_a_decoder_only_student(data):
  root = data["tmp"] / "pipeline"
  train_dir = root / "train"
  (train_dir / "data").mkdir(parents=True)
  programs = train_dir / "data" / "synthetic.jsonl"
  programs.write_text(data["programs"].read_text())
  env = tl.subprocess_env(programs)
  result = tl.run([
      sys.executable, "-m", "t5x.train", "--gin_search_paths=gin_configs",
      f"--gin_file={DECODER_GIN}", "--gin_file=runs/pad_finetune.gin",
      "--gin.MIXTURE_OR_TASK_NAME=@program_task()", f"--gin.program_task.jsonl_path='{programs}'",
      f"--gin.MODEL_DIR='{train_dir / 'model'}'", "--gin.TRAIN_STEPS=2", "--gin.EVAL_PERIOD=2",
      "--gin.EVAL_STEPS=1", "--gin.EVALUATOR_NUM_EXAMPLES=2", "--gin.WARMUP_STEPS=1",
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 128}"], env)
  assert result.returncode == 0, result.stderr[-4000:]
  trained = {"checkpoint_dir": str(train_dir / "model" / "checkpoint_2"),
             "model_gin_files": [str(tl.REPO / "gin_configs" / DECODER_GIN)],
             "gin_search_paths": [str(tl.REPO / "gin_configs")], "vocab_dir": None}
  stage_configs = {
      "refine": configs.RefineConfig(
          limit=8, operators=["undefined_name"], train_steps=2, max_decode_length=24,
          batch_size=8, run_gin_files=["runs/pad_refine.gin", "runs/demo_refine.gin"],
          macros={"EVAL_STEPS": 1, "EVALUATOR_NUM_EXAMPLES": 2, "BATCH_SIZE": 8,
                  "WARMUP_STEPS": 1}),
      "train": configs.TrainConfig(model_gin_files=[DECODER_GIN], env=CPU_ENV),
      "limits": ExecLimits(workers=1),
  }
  for cfg in stage_configs.values():
    cfg.validate()
  run = run_dir_lib.RunDir(root)
  ctx = StageContext(run=run, stage_dir=run.stage_dir("refine"),
                     bar=lambda total=None, unit="it", desc_suffix=None: tqdm.tqdm(
                         total=total, disable=True))
  ctx.stage_dir.mkdir(parents=True, exist_ok=True)
  summary = refine_stage.run(ctx, stage_configs, {"train": {"summary": trained}})

  round_1 = refine_stage.round_dir(ctx.stage_dir, 1)
  assert summary["decoder_only"] is True
  assert summary["checkpoint_dir"] == str(round_1 / "model" / "checkpoint_2")
  assert "refine_tasks.refine_mixture.decoder_only = True" in (
      round_1 / "refine.gin").read_text()
  saved = (round_1 / "model" / "config.gin").read_text()
  assert "MODEL = @models.DecoderOnlyModel()" in saved
  assert "\nrefine_tasks.refine_mixture.decoder_only = True\n" in saved
  # The decoder-only student decoded its training questions for its own failures.
  sources = {r["source"] for r in refine_inputs.read_rows(round_1 / "refine.jsonl")}
  assert "mutation:undefined_name" in sources and "student" in sources
