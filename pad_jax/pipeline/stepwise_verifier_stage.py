"""The stepwise_verifier stage: the step verifier of PaD's stage IV, trained by the pipeline.

After `train` (and `refine`), before `decode`, off unless in
`PipelineConfig.stages`. The stage

1. writes the questions it labels (`stepwise_verifier/questions.jsonl`): one
   verified program per question of the train stage's data (the first
   `StepwiseVerifierConfig.limit` questions of each source), with its gold
   answer;
2. runs `python -m pad_jax.stepwise.verifier_data` with the trained student
   on them (`stepwise_verifier/data/verifier.jsonl`: every line prefix of
   the verified program and of `samples` student programs, labelled
   `correct` when one of `completions` completions from it reaches the gold
   answer; docs/stepwise.md);
3. runs `python -m t5x.train` with the verifier's model gin files (default
   the student's), `StepwiseVerifierConfig.run_gin_files`
   (`runs/step_verifier.gin`) and `stepwise_verifier/verifier.gin` (the
   data as `VERIFIER_DATA`) into `stepwise_verifier/model/`.

Its summary's `checkpoint_dir` is the verifier: the decode stage gives it to
infer as `step_verifier`, mixed with the student's log-probability by
`DecodeConfig.step_verifier_weight`. A killed stage resumes: the data
builder skips the questions already written (`pad_jax.jsonl`'s resume rule),
and t5x restores the latest checkpoint in `model/`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Mapping, Optional

from pad_jax import atomic
from pad_jax import checkpoints
from pad_jax import jsonl
from pad_jax.execution import flags as exec_flags
from pad_jax.execution.limits import ExecLimits
from pad_jax.pipeline import child
from pad_jax.pipeline import decode_stage
from pad_jax.pipeline import refine_stage
from pad_jax.pipeline import train_stage
from pad_jax.pipeline.configs import REPO_ROOT, StepwiseVerifierConfig, TrainConfig
from pad_jax.pipeline.stage import StageContext, StageError
from tasks import verifier_tasks

DATA_FILE = "data/verifier.jsonl"


def question_rows(train_dir: pathlib.Path, cfg: StepwiseVerifierConfig) -> list[dict[str, Any]]:
  """One row `{id, question, answer, program}` per training question (first program kept)."""
  try:
    by_source = refine_stage.trained_programs(train_dir, cfg.sources)
  except StageError:
    raise StageError(f"{train_dir / refine_stage.DATA_DIR}: no training data of "
                     f"StepwiseVerifierConfig.sources={cfg.sources}") from None
  rows: dict[str, dict[str, Any]] = {}
  for records in by_source.values():
    questions = 0
    for r in records:
      if r.id in rows:
        continue
      if cfg.limit is not None and questions == cfg.limit:
        break
      rows[r.id] = {"id": r.id, "question": r.question, "answer": r.answer,
                    "program": r.program}
      questions += 1
  return list(rows.values())


def data_command(cfg: StepwiseVerifierConfig, limits: ExecLimits, student: Mapping[str, Any],
                 questions: pathlib.Path, output: pathlib.Path) -> list[str]:
  """The `python -m pad_jax.stepwise.verifier_data` command line (the student as infer gets it)."""
  flags = [f"--checkpoint_dir={student['checkpoint_dir']}", f"--input={questions}",
           f"--output={output}", f"--samples={cfg.samples}", f"--completions={cfg.completions}",
           f"--temperature={cfg.temperature}", f"--top_k={cfg.top_k}",
           f"--max_decode_length={cfg.max_decode_length}",
           f"--max_input_length={cfg.max_input_length}", f"--batch_size={cfg.batch_size}",
           f"--seed={cfg.seed}",
           f"--gin_search_paths={','.join(student['gin_search_paths'])}"]
  flags += [f"--gin_file={f}" for f in student["model_gin_files"]]
  if student.get("vocab_dir"):
    flags.append(f"--vocab_dir={student['vocab_dir']}")
  return child.python_command("pad_jax.stepwise.verifier_data", *flags,
                              *exec_flags.as_flags(limits))


def verifier_gin(data: pathlib.Path, initial_checkpoint: Optional[str] = None) -> str:
  """The macro `runs/step_verifier.gin` requires (and the student to start from), as a gin file."""
  lines = ["# Written by the pad-jax pipeline's stepwise_verifier stage: the data.",
           "from __gin__ import dynamic_registration", "from t5x import utils",
           f"VERIFIER_DATA = {json.dumps(str(data))}"]
  if initial_checkpoint:  # the student's parameters; its optimizer state and step start afresh
    lines += [f"INITIAL_CHECKPOINT_PATH = {json.dumps(str(initial_checkpoint))}",
              "init/utils.RestoreCheckpointConfig.assignment_map = ("
              "(r'state/param_states.*', None), (r'state/step', None))"]
  return "\n".join(lines + [""])


def label_counts(data: pathlib.Path) -> dict[str, int]:
  """Questions, prefixes and `correct` prefixes of the whole data file (a resumed
  builder's own summary counts only the rows it wrote)."""
  rows = verifier_tasks.read_verifier_rows(str(data))
  prefixes = [p for row in rows for p in row["prefixes"]]
  return {"questions": len(rows), "prefixes": len(prefixes),
          "correct": sum(p["label"] == verifier_tasks.CORRECT for p in prefixes)}


def run(ctx: StageContext, configs: Mapping[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
  """Labels the student's step prefixes and trains the step verifier on them with t5x."""
  cfg: StepwiseVerifierConfig = configs["stepwise_verifier"]
  train_cfg: TrainConfig = configs["train"]
  student = decode_stage.trained_checkpoint(upstream)
  rows = question_rows(ctx.upstream("train"), cfg)
  questions = ctx.path("questions.jsonl")
  jsonl.write_rows(questions, rows)  # the same rows on resume: the builder skips done ids
  data = ctx.path(DATA_FILE)
  data.parent.mkdir(parents=True, exist_ok=True)
  bar = ctx.bar(total=len(rows), unit="q", desc_suffix="data")
  child.run_child(data_command(cfg, configs["limits"], student, questions, data),
                  ctx.path("verifier_data.log"), env=child.child_env(extra=train_cfg.env),
                  cwd=str(REPO_ROOT),
                  poll=lambda: (setattr(bar, "n", child.count_lines(data)), bar.refresh()))
  bar.close()
  counts = label_counts(data)

  atomic.write_text(ctx.path("verifier.gin"), verifier_gin(
      data, student["checkpoint_dir"] if cfg.from_student else None))
  run_cfg = dataclasses.replace(train_cfg, model_gin_files=tuple(cfg.model_gin_files or ()),
                                run_gin_files=tuple(cfg.run_gin_files),
                                train_steps=cfg.train_steps, macros=cfg.macros)
  model_files, run_files = train_stage.snapshot_gin_files(run_cfg, ctx.path("gin"))
  model_files = model_files or list(student["model_gin_files"])
  model_dir = ctx.path("model")
  command = train_stage.t5x_train_command(run_cfg, model_dir, ctx.path("verifier.gin"),
                                          model_files + run_files)
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
      **counts, "data": str(data), "student_checkpoint": student["checkpoint_dir"],
      "checkpoint_dir": str(checkpoint), "step": checkpoints.checkpoint_step(checkpoint),
      "model_gin_files": model_files,
      "final_metrics": {tag: points[-1][1] for tag, points in curves.items() if points},
  }
