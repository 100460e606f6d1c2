"""The decode stage: the trained student writes a program for every eval question.

One `python -m pad_jax.infer` child decodes all eval sets (one model load and
compilation) with `DecodeConfig`'s decode settings as its flags
(`DecodeSettings.infer_flags`, every field, checked before the first stage
as infer checks them); infer appends per batch and skips finished ids, so a killed
stage resumes. Outputs: `decode/<eval_set>.inputs.jsonl` (`id`, `question`,
`answer`), `decode/<eval_set>.jsonl` (infer's rows: `id`, `prediction`,
`tokens`, and `predictions` when several decodes are asked) and
`decode/predictions.jsonl` (all sets, ids `<eval_set>/<id>`).

With `DecodeConfig.time_each_set` each eval set gets its own child
(`decode/<eval_set>.all.jsonl`, `infer.<eval_set>.log`), and the summary
gives `seconds` and `seconds_per_question` per set: infer's own time for that
set (restoring the checkpoint, compiling, decoding, and the executor calls of
`stepwise_beam` or refinement), without the child's Python start-up. After a
train stage with a `refine` stage, the refined checkpoint decodes; after a
`stepwise_verifier` stage, its verifier is infer's `--step_verifier`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Mapping

from pad_jax import atomic
from pad_jax import jsonl
from pad_jax.data import benchmarks
from pad_jax.data import programs
from pad_jax.pipeline import child
from pad_jax.pipeline.configs import DecodeConfig
from pad_jax.pipeline.stage import StageContext, StageError
from pad_jax.pipeline.synthesize_stage import SYNTHETIC

# Modules whose configurables a model gin file may create lazily, after gin
# has locked its config (e.g. `synthetic.demo_vocabulary()` imports
# `pad_jax.student.vocab` when called): imported while the config is parsed.
_DECODE_IMPORTS = ("pad_jax.student.vocab",)


def eval_sets(ctx: StageContext, cfg: DecodeConfig) -> dict[str, list[dict[str, Any]]]:
  """The eval sets as rows `{id, question, answer}` (synthetic first)."""
  sets: dict[str, list[dict[str, Any]]] = {}
  if cfg.synthetic:
    path = ctx.upstream("synthesize", SYNTHETIC, "test.jsonl")
    if not path.exists():
      raise StageError(f"DecodeConfig.synthetic is True but {path} does not exist; "
                       "set SynthesizeConfig.synthetic_test")
    sets[SYNTHETIC] = [{"id": r.id, "question": r.question, "answer": r.answer}
                       for r in programs.read_programs(path)]
  for name in cfg.benchmarks:
    sets[name] = [{"id": e.id, "question": e.question, "answer": e.answer}
                  for e in benchmarks.load(name, cfg.split)]
  return {name: rows[:cfg.set_limit(name)] for name, rows in sets.items()}


def run(ctx: StageContext, configs: Mapping[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
  """Decodes every eval set with the checkpoint of the last training stage."""
  cfg: DecodeConfig = configs["decode"]
  if "stepwise_verifier" in upstream:  # stage IV's scorer, trained by the pipeline
    cfg = dataclasses.replace(
        cfg, step_verifier=upstream["stepwise_verifier"]["summary"]["checkpoint_dir"])
  checkpoint = trained_checkpoint(upstream)
  sets = eval_sets(ctx, cfg)
  for name, rows in sets.items():
    jsonl.write_rows(ctx.path(f"{name}.inputs.jsonl"), rows)
  # One child for all sets (one model load and compilation), or one per set
  # when seconds per question are wanted.
  groups = [[name] for name in sets] if cfg.time_each_set else [list(sets)]
  seconds, refine = {}, {}
  for group in groups:
    stem = group[0] if cfg.time_each_set else "predictions"
    infer_summary = _decode_group(ctx, cfg, checkpoint, {n: sets[n] for n in group}, stem)
    if cfg.time_each_set:
      seconds[group[0]] = infer_summary["seconds"]
    if "refine" in infer_summary:
      refine[stem] = infer_summary["refine"]
  summary: dict[str, Any] = {"examples": {name: len(rows) for name, rows in sets.items()},
                             "checkpoint_dir": checkpoint["checkpoint_dir"]}
  if cfg.step_verifier:
    summary["step_verifier"] = cfg.step_verifier
  if refine:
    summary["refine"] = refine  # per round: fixed, broken (pad_jax.decoding.refine_loop)
  if seconds:
    summary["seconds"] = seconds
    summary["seconds_per_question"] = {n: round(seconds[n] / max(1, len(sets[n])), 4)
                                       for n in seconds}
  return summary


def trained_checkpoint(upstream: Mapping[str, Any]) -> Mapping[str, Any]:
  """The train summary (checkpoint, model files) of the last training stage."""
  if "refine" in upstream:
    return upstream["refine"]["summary"]
  return upstream["train"]["summary"]


def _decode_group(ctx: StageContext, cfg: DecodeConfig, checkpoint: Mapping[str, Any],
                  sets: Mapping[str, list[dict[str, Any]]], stem: str) -> dict[str, Any]:
  """Decodes `sets` in one infer child; writes `<set>.jsonl`; returns infer's summary."""
  combined = [{**r, "id": f"{name}/{r['id']}", "eval_set": name, "example_id": r["id"]}
              for name, rows in sets.items() for r in rows]
  inputs = ctx.path(f"{stem}.inputs.all.jsonl" if stem != "predictions" else "inputs.jsonl")
  jsonl.write_rows(inputs, combined)
  partial = ctx.path(f"{stem}.jsonl.partial")
  done = ctx.path(f"{stem}.done.json")
  if done.exists():  # a resumed stage: this group finished before the kill
    return json.loads(done.read_text())
  bar = ctx.bar(total=len(combined), unit="ex", desc_suffix="+".join(sets))

  def poll():
    bar.n = min(child.count_lines(partial), bar.total)
    bar.refresh()

  log = ctx.path(f"infer.{stem}.log" if stem != "predictions" else "infer.log")
  flags = [f"--checkpoint_dir={checkpoint['checkpoint_dir']}", f"--input={inputs}",
           f"--output={partial}"] + _model_flags(ctx, checkpoint) + cfg.infer_flags()
  child.run_child(child.python_command("pad_jax.infer", *flags), log, poll=poll)
  bar.close()
  by_set: dict[str, list[dict[str, Any]]] = {name: [] for name in sets}
  for row in jsonl.read_rows(partial):
    by_set[row["eval_set"]].append({**row, "id": row["example_id"]})
  for name, rows in by_set.items():
    if len({r["id"] for r in rows}) != len(sets[name]):
      raise StageError(f"{partial}: {len(rows)} predictions for the {len(sets[name])} "
                       f"questions of {name}")
    jsonl.write_rows(ctx.path(f"{name}.jsonl"), rows)
  partial.replace(ctx.path(f"{stem}.jsonl" if stem == "predictions" else f"{stem}.all.jsonl"))
  summary = infer_summary(log)
  atomic.write_json(done, summary)
  return summary


def infer_summary(log: pathlib.Path) -> dict[str, Any]:
  """Infer's last summary line in `log`, with `seconds` added up over its runs.

  infer prints one JSON summary line when it finishes (`seconds`: its time
  from restoring the checkpoint to the last row). A resumed child reports
  only the rest; the log is appended to, so every run's seconds count.
  """
  last: dict[str, Any] = {}
  total = 0.0
  for line in log.read_text(errors="replace").splitlines():
    if line.startswith("{") and '"seconds"' in line:
      try:
        row = json.loads(line)
        total += float(row["seconds"])
      except (ValueError, KeyError, TypeError):
        continue
      last = row
  return {**last, "seconds": round(total, 3)}


def _model_flags(ctx: StageContext, checkpoint: Mapping[str, Any]) -> list[str]:
  imports = ctx.path("imports.gin")
  atomic.write_text(imports, "from __gin__ import dynamic_registration\n" + "".join(
      f"import {m}\n" for m in _DECODE_IMPORTS))
  flags = [f"--gin_search_paths={','.join(checkpoint['gin_search_paths'])}",
           f"--gin_file={imports}"]
  flags += [f"--gin_file={f}" for f in checkpoint["model_gin_files"]]
  if checkpoint.get("vocab_dir"):
    flags.append(f"--vocab_dir={checkpoint['vocab_dir']}")
  return flags
