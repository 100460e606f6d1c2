"""The decode stage: the trained student writes a program for every eval question.

One `python -m pad_jax.infer` child decodes all eval sets (one model load and
compilation); infer appends per batch and skips finished ids, so a killed
stage resumes. Outputs: `decode/<eval_set>.inputs.jsonl` (`id`, `question`,
`answer`), `decode/<eval_set>.jsonl` (infer's rows: `id`, `prediction`,
`tokens`, and `predictions` when several decodes are asked) and
`decode/predictions.jsonl` (all sets, ids `<eval_set>/<id>`).
"""

from __future__ import annotations

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
# `pad_jax.vocab` when called): imported while the config is parsed.
_DECODE_IMPORTS = ("pad_jax.vocab",)


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
  if cfg.limit is not None:
    sets = {name: rows[:cfg.limit] for name, rows in sets.items()}
  return sets


def run(ctx: StageContext, configs: Mapping[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
  """Decodes every eval set with the checkpoint the train stage reported."""
  cfg: DecodeConfig = configs["decode"]
  checkpoint = upstream["train"]["summary"]
  sets = eval_sets(ctx, cfg)
  for name, rows in sets.items():
    jsonl.write_rows(ctx.path(f"{name}.inputs.jsonl"), rows)
  combined = [{**r, "id": f"{name}/{r['id']}", "eval_set": name, "example_id": r["id"]}
              for name, rows in sets.items() for r in rows]
  inputs = ctx.path("inputs.jsonl")
  jsonl.write_rows(inputs, combined)
  partial = ctx.path("predictions.jsonl.partial")
  bar = ctx.bar(total=len(combined), unit="ex", desc_suffix="+".join(sets))

  def poll():
    bar.n = min(child.count_lines(partial), bar.total)
    bar.refresh()

  flags = [f"--checkpoint_dir={checkpoint['checkpoint_dir']}", f"--input={inputs}",
           f"--output={partial}"] + _model_flags(ctx, checkpoint) + cfg.infer_flags()
  child.run_child(child.python_command("pad_jax.infer", *flags), ctx.path("infer.log"), poll=poll)
  bar.close()
  by_set: dict[str, list[dict[str, Any]]] = {name: [] for name in sets}
  for row in jsonl.read_rows(partial):
    by_set[row["eval_set"]].append({**row, "id": row["example_id"]})
  for name, rows in by_set.items():
    if len({r["id"] for r in rows}) != len(sets[name]):
      raise StageError(f"{partial}: {len(rows)} predictions for the {len(sets[name])} "
                       f"questions of {name}")
    jsonl.write_rows(ctx.path(f"{name}.jsonl"), rows)
  partial.replace(ctx.path("predictions.jsonl"))
  return {"examples": {name: len(rows) for name, rows in sets.items()}}


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
