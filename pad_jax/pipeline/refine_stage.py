"""The refine stage (PaD's stage III): refinement data, then the student trained further, in rounds.

After `train`, the stage writes the programs the student was trained on
(`refine/programs.jsonl`, the kept ones when over-length examples were
dropped) and those it refines from (`refine/sources.jsonl`: the first
`RefineConfig.limit` programs of each source), then runs
`RefineConfig.rounds` rounds, round k in `refine/round_<k>/`:

1. data, `python -m pad_jax.refine` into `round_<k>/data/` (resumable). Round
   1: every mutation operator applied to every source program, plus the
   trained student's own failures on those questions; round k > 1: the
   failures of round k-1's student only (`--per_operator=0
   --student_round=k-1`: source `student:round_<k-1>`). Either way only the
   programs inference would refine become rows, with the feedback inference
   gives (`pad_jax.execution.feedback.refinement_feedback`, docs/refinement.md);
2. the refinement rows of the mixture, `round_<k>/refine.jsonl`: rounds 1..k's
   rows together (the new failures are added to what earlier rounds had);
3. `python -m t5x.train` with the student's model gin files,
   `RefineConfig.run_gin_files` (`runs/pad_refine.gin`: the refinement task
   mixed with the original programs) and `round_<k>/refine.gin` (the data and
   the checkpoint to continue from as macros; for a decoder-only student,
   `TrainConfig.decoder_only()` of its model files, also the mixture's
   decoder-only layout and vocabulary, as the train stage's task.gin): round 1
   continues from the trained student, round k from round k-1's checkpoint,
   into `round_<k>/model/` (`RefineConfig.train_steps` steps each);
4. `round_<k>/DONE.json`, the round's summary, written last.

The stage's summary has the train stage's keys (`checkpoint_dir`,
`model_gin_files`, ...) for the last round's student, so the decode stage
decodes it; decode with `DecodeConfig.refine_rounds = R` to refine at
inference too. A killed stage resumes: finished rounds (`DONE.json`) are not
redone; in the interrupted round `pad_jax.refine` skips finished programs
and decodes, and t5x restores the latest checkpoint in `round_<k>/model/`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Callable, Mapping, Optional

from pad_jax import atomic
from pad_jax import checkpoints
from pad_jax import jsonl
from pad_jax.data import programs as programs_lib
from pad_jax.execution import flags as exec_flags
from pad_jax.pipeline import child
from pad_jax.pipeline import run_dir as run_dir_lib
from pad_jax.pipeline import train_stage
from pad_jax.pipeline.configs import REPO_ROOT, RefineConfig, TrainConfig
from pad_jax.pipeline.stage import StageContext, StageError
from pad_jax.refine import data as refine_data

DATA_DIR = "data"
ROUND_DONE = "DONE.json"


def round_dir(stage_dir: pathlib.Path, number: int) -> pathlib.Path:
  """Round `number`'s directory (`round_<k>`, counted from 1)."""
  return pathlib.Path(stage_dir) / f"round_{number}"


def trained_programs(train_dir: pathlib.Path, sources: Any = None) -> dict[str, list[Any]]:
  """`{source: records}` the train stage trained on (its `*.fit-*` rows when present)."""
  data_dir = train_dir / DATA_DIR
  out = {}
  for path in sorted(data_dir.glob("*.jsonl")):
    if ".fit-" in path.name:
      continue
    source = path.stem
    if sources is not None and source not in sources:
      continue
    fits = sorted(data_dir.glob(f"{source}.fit-*.jsonl"))
    out[source] = programs_lib.read_programs(fits[-1] if fits else path)
  if not out:
    raise StageError(f"{data_dir}: no training data of RefineConfig.sources={sources}")
  return out


def refine_gin(refine_rows: pathlib.Path, programs: pathlib.Path, checkpoint: str,
               decoder_only: bool = False, vocabulary_macro: Optional[str] = None) -> str:
  """The macros `runs/pad_refine.gin` requires, as a gin file.

  `decoder_only`: the student is a `DecoderOnlyModel` (`TrainConfig.decoder_only()`
  of its model files): the mixture gets the decoder-only (prefix LM) layout and
  the vocabulary macro `vocabulary_macro`, as the train stage's task does.
  """
  lines = ["# Written by the pad-jax pipeline's refine stage: the data and the student."]
  if decoder_only:
    if not vocabulary_macro:
      raise StageError("TrainConfig.vocabulary_macro: a decoder-only student's refinement "
                       "mixture needs the model's vocabulary macro")
    lines += ["from __gin__ import dynamic_registration", "from tasks import refine_tasks"]
  lines += [f"REFINE_DATA = {json.dumps(str(refine_rows))}",
            f"PROGRAMS_DATA = {json.dumps(str(programs))}",
            f"INITIAL_CHECKPOINT_PATH = {json.dumps(str(checkpoint))}"]
  if decoder_only:
    lines += ["refine_tasks.refine_mixture.decoder_only = True",
              f"refine_tasks.refine_mixture.vocabulary = %{vocabulary_macro}"]
  return "\n".join(lines + [""])


def student_is_decoder_only(train_cfg: TrainConfig, trained: Mapping[str, Any]) -> bool:
  """Whether the trained student's model files (the train stage's copies) define a
  `DecoderOnlyModel`."""
  return dataclasses.replace(train_cfg,
                             model_gin_files=tuple(trained["model_gin_files"])).decoder_only()


def refine_data_command(cfg: RefineConfig, configs: Mapping[str, Any], sources_path: pathlib.Path,
                        out_dir: pathlib.Path, trained: Mapping[str, Any], round_number: int = 1,
                        checkpoint: Optional[str] = None) -> list[str]:
  """The `python -m pad_jax.refine` command line of round `round_number`.

  Round 1: mutants, and the failures of the trained student (`trained`'s
  checkpoint) when `cfg.student_failures`; round k > 1: only the failures of
  round k-1's student, `checkpoint`.
  """
  first = round_number == 1
  flags = [f"--programs={sources_path}", f"--out={out_dir}",
           f"--operators={','.join(cfg.operators)}",
           f"--per_operator={cfg.per_operator if first else 0}",
           f"--seed={cfg.seed}", "--progress=false"]
  if cfg.student_failures or not first:
    flags += [f"--checkpoint_dir={checkpoint or trained['checkpoint_dir']}",
              f"--student_round={round_number - 1}",
              f"--batch_size={cfg.batch_size}", f"--max_decode_length={cfg.max_decode_length}"]
    flags += [f"--gin_file={f}" for f in trained["model_gin_files"]]
    if trained.get("vocab_dir"):
      flags.append(f"--vocab_dir={trained['vocab_dir']}")
  return child.python_command("pad_jax.refine", *flags, *exec_flags.as_flags(configs["limits"]))


def mixture_rows(stage_dir: pathlib.Path, number: int) -> list[dict[str, Any]]:
  """The refinement rows round `number` trains on: those of rounds 1..number's data."""
  rows = []
  for k in range(1, number + 1):
    rows.extend(jsonl.read_resumable(round_dir(stage_dir, k) / DATA_DIR / refine_data.ROWS_FILE))
  return rows


RoundFn = Callable[[int, pathlib.Path, str], dict[str, Any]]


def run_rounds(rounds: int, stage_dir: pathlib.Path, first_checkpoint: str,
               run_round: RoundFn) -> list[dict[str, Any]]:
  """Runs rounds 1..`rounds` in order, each to completion once; returns their summaries.

  Args:
    rounds: how many rounds.
    stage_dir: the stage's directory (round k in `round_<k>/`).
    first_checkpoint: what round 1 continues from (the trained student).
    run_round: `(k, its directory, the checkpoint to continue from) -> summary`
      (with `checkpoint_dir`, the round's student); it must resume its own
      partial outputs when run again after a kill.

  A round whose `DONE.json` exists is read back, not redone; the others run
  with the previous round's checkpoint, and their marker is written last.
  """
  summaries = []
  checkpoint = first_checkpoint
  for number in range(1, rounds + 1):
    directory = round_dir(stage_dir, number)
    marker = directory / ROUND_DONE
    if marker.exists():
      summary = run_dir_lib.read_json(marker)
    else:
      directory.mkdir(parents=True, exist_ok=True)
      summary = {"round": number, "from_checkpoint": checkpoint,
                 **run_round(number, directory, checkpoint)}
      atomic.write_json(marker, summary)
    summaries.append(summary)
    checkpoint = summary["checkpoint_dir"]
  return summaries


def _round_data(ctx: StageContext, cfg: RefineConfig, configs: Mapping[str, Any],
                trained: Mapping[str, Any], number: int, directory: pathlib.Path,
                checkpoint: str) -> dict[str, Any]:
  """Phase 1 of a round: `python -m pad_jax.refine` into `<round>/data/`; its report."""
  data_dir = directory / DATA_DIR
  data_dir.mkdir(parents=True, exist_ok=True)
  command = refine_data_command(cfg, configs, ctx.path("sources.jsonl"), data_dir, trained,
                                number, checkpoint)
  bar = ctx.bar(desc_suffix=f"round {number} data", unit="row")
  child.run_child(command, directory / "refine_data.log",
                  env=child.child_env(extra=configs["train"].env), cwd=str(REPO_ROOT),
                  poll=lambda: (setattr(bar, "n", child.count_lines(data_dir / refine_data.ROWS_FILE)),
                                bar.refresh()))
  bar.close()
  return run_dir_lib.read_json(data_dir / refine_data.REPORT_FILE)


def _round_train(ctx: StageContext, cfg: RefineConfig, train_cfg: TrainConfig,
                 trained: Mapping[str, Any], number: int, directory: pathlib.Path,
                 checkpoint: str) -> tuple[pathlib.Path, dict[str, Any]]:
  """Phase 3 of a round: t5x continues `checkpoint` on the round's mixture; its checkpoint."""
  atomic.write_text(directory / "refine.gin",
                    refine_gin(directory / refine_data.ROWS_FILE, ctx.path("programs.jsonl"),
                               checkpoint, student_is_decoder_only(train_cfg, trained),
                               train_cfg.vocabulary_macro))
  run_cfg = dataclasses.replace(train_cfg, run_gin_files=tuple(cfg.run_gin_files),
                                train_steps=cfg.train_steps, macros=cfg.macros)
  _, run_files = train_stage.snapshot_gin_files(run_cfg, ctx.path("gin"))
  model_dir = directory / "model"
  command = train_stage.t5x_train_command(run_cfg, model_dir, directory / "refine.gin",
                                          list(trained["model_gin_files"]) + run_files)
  bar = ctx.bar(total=cfg.train_steps, unit="step", desc_suffix=f"round {number} train")
  child.run_child(command, directory / "t5x_train.log", on_line=train_stage._Progress(bar),  # pylint: disable=protected-access
                  env=child.child_env(extra=train_cfg.env), cwd=str(REPO_ROOT))
  bar.close()
  curves = train_stage.read_curves(model_dir)
  atomic.write_json(directory / "curves.json", curves)
  latest = checkpoints.latest_checkpoint(model_dir)
  if latest is None:
    raise StageError(f"t5x finished but wrote no checkpoint into {model_dir}")
  return latest, curves


def run(ctx: StageContext, configs: Mapping[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
  """Builds refinement data and trains the student further on it with t5x, round by round."""
  cfg: RefineConfig = configs["refine"]
  trained = upstream["train"]["summary"]
  by_source = trained_programs(ctx.upstream("train"), cfg.sources)
  programs_lib.write_programs(ctx.path("programs.jsonl"),
                              [r for rows in by_source.values() for r in rows])
  programs_lib.write_programs(ctx.path("sources.jsonl"),
                              [r for rows in by_source.values() for r in rows[:cfg.limit]])

  def one_round(number: int, directory: pathlib.Path, checkpoint: str) -> dict[str, Any]:
    data_report = _round_data(ctx, cfg, configs, trained, number, directory, checkpoint)
    rows = jsonl.write_rows(directory / refine_data.ROWS_FILE, mixture_rows(ctx.stage_dir, number))
    if not rows:
      raise StageError(f"{directory / refine_data.ROWS_FILE}: no refinement rows (see "
                       f"{directory / DATA_DIR / refine_data.REPORT_FILE})")
    latest, curves = _round_train(ctx, cfg, configs["train"], trained, number, directory,
                                  checkpoint)
    return {"new_rows": data_report.get("rows"), "refinement_rows": rows,
            "data_report": data_report, "checkpoint_dir": str(latest),
            "step": checkpoints.checkpoint_step(latest),
            "final_metrics": {tag: points[-1][1] for tag, points in curves.items() if points}}

  rounds = run_rounds(cfg.rounds, ctx.stage_dir, trained["checkpoint_dir"], one_round)
  last = rounds[-1]
  return {
      "refinement_rows": last["refinement_rows"], "data_report": rounds[0]["data_report"],
      "rounds": rounds, "programs": {s: len(rows) for s, rows in by_source.items()},
      "checkpoint_dir": last["checkpoint_dir"], "step": last["step"],
      "from_checkpoint": trained["checkpoint_dir"],
      "model_gin_files": list(trained["model_gin_files"]),
      "gin_search_paths": trained["gin_search_paths"], "vocab_dir": trained.get("vocab_dir"),
      "final_metrics": last["final_metrics"],
      "decoder_only": student_is_decoder_only(configs["train"], trained),
  }
