"""The data stages of the pipeline: synthesize, verify, decode and score.

Each stage is a function `stage(ctx, config) -> summary` that writes only
into `ctx.stage_dir` and reads the outputs of earlier stages from `ctx.run`.
Their configs are gin-configurable dataclasses, bound in
`gin_configs/runs/*.gin` (e.g. `SynthesizeConfig.teacher = 'openai'`). The
training stage lives in `pad_jax/train_stage.py`, the report in
`pad_jax/report.py`.

Files (all JSONL rows are one JSON object per line):

* `synthesize/teacher/`: the teacher's completions (`completions.jsonl`,
  `failed.jsonl`, `run.json`; `pad_jax.teacher.synthesize`).
* `synthesize/synthetic/{train,validation,test}.jsonl`: seeded synthetic
  problems (program-dataset format).
* `verify/teacher/`: `pad_jax.teacher.verify` output for the teacher
  (`programs.jsonl`, `report.json`, `report.png`).
* `verify/programs.jsonl`: every kept program (teacher + synthetic train),
  what training reads; `verify/report.json`: status counts and pass rates.
* `decode/<eval_set>.inputs.jsonl` (`id`, `question`, `answer`) and
  `decode/<eval_set>.jsonl` (`python -m pad_jax.infer` output rows: `id`,
  `prediction`, `tokens`, and `predictions` when several decodes are asked);
  `decode/predictions.jsonl` holds all sets (ids `<eval_set>/<id>`).
* `score/<eval_set>.jsonl` (`id`, `status`, `value`, `correct`, `error`,
  `prediction`) and `score/summary.json` (`{eval_set: {n, accuracy,
  runnable_rate, status_counts}}`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import gin

from pad_jax import child
from pad_jax import run_dir as run_dir_lib

SYNTHETIC = "synthetic"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


class StageError(RuntimeError):
  """A stage cannot run (bad config, missing input); the message says why."""


@dataclasses.dataclass
class StageContext:
  """What a stage gets: its directory, the run, a progress-bar factory."""

  run: run_dir_lib.RunDir
  stage_dir: pathlib.Path
  bar: Callable[..., Any]  # bar(total=None, unit="it") -> tqdm-like object

  def path(self, *parts: str) -> pathlib.Path:
    return self.stage_dir.joinpath(*parts)

  def upstream(self, stage: str, *parts: str) -> pathlib.Path:
    return self.run.stage_dir(stage).joinpath(*parts)


# ---------------------------------------------------------------------------
# Configs.
# ---------------------------------------------------------------------------


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SynthesizeConfig:
  """Where the training programs come from.

  Attributes:
    teacher: `gold` (offline GSM8K-rationale teacher), `openai` (any
      OpenAI-compatible server) or `none` (synthetic problems only).
    benchmark: benchmark the teacher solves (`gsm8k`).
    split: its split (`train`).
    limit: only the first N questions (None: all).
    base_url: OpenAI-compatible server (teacher `openai`).
    model: model name (teacher `openai`).
    samples: programs sampled per question (teacher `openai`).
    concurrency: parallel requests (teacher `openai`).
    temperature: sampling temperature (teacher `openai`; None: its default).
    openai_options: more `pad_jax.teacher.synthesize.OpenAIConfig` fields
      (rpm, tpm, max_cost_usd, batch, use_n, variants, max_tokens, ...).
    synthetic_train: synthetic training problems (0: none).
    synthetic_validation: synthetic validation problems.
    synthetic_test: synthetic held-out problems (the demo's proof of learning).
    synthetic_seed: generator seed.
    synthetic_templates: template names (None: all).
  """

  teacher: str = "gold"
  benchmark: str = "gsm8k"
  split: str = "train"
  limit: Optional[int] = None
  base_url: Optional[str] = None
  model: Optional[str] = None
  samples: int = 1
  concurrency: int = 16
  temperature: Optional[float] = None
  openai_options: Optional[Mapping[str, Any]] = None
  synthetic_train: int = 0
  synthetic_validation: int = 0
  synthetic_test: int = 0
  synthetic_seed: int = 0
  synthetic_templates: Optional[Sequence[str]] = None


@gin.configurable
@dataclasses.dataclass(frozen=True)
class VerifyConfig:
  """How programs are checked by execution.

  Attributes:
    mode: answer comparison, `pad` (rounded) or `strict`.
    workers: executor workers (None: the executor's default).
    timeout_s: wall-clock limit per program.
    memory_mb: address-space limit per program.
  """

  mode: str = "pad"
  workers: Optional[int] = None
  timeout_s: float = 2.0
  memory_mb: int = 512


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DecodeConfig:
  """What the trained student decodes.

  Attributes:
    benchmarks: benchmark names to decode (`gsm8k`, `svamp`, `asdiv`, ...).
    split: their split.
    synthetic: also decode the synthetic held-out problems.
    limit: at most N examples per eval set (None: all).
    decode: `greedy`, `beam` or `sample`.
    num_decodes: decodes per question (K > 1: self-consistency).
    beam_size: beam width (decode `beam`).
    temperature: sampling temperature (decode `sample`).
    top_k: top-k sampling (decode `sample`; None: off).
    batch_size: decode batch size (None: infer's default).
    max_decode_length: longest program in tokens.
    extra_flags: more flags for `python -m pad_jax.infer`.
  """

  benchmarks: Sequence[str] = ("gsm8k",)
  split: str = "test"
  synthetic: bool = True
  limit: Optional[int] = None
  decode: str = "greedy"
  num_decodes: int = 1
  beam_size: int = 4
  temperature: float = 0.7
  top_k: Optional[int] = None
  batch_size: Optional[int] = None
  max_decode_length: int = 256
  extra_flags: Sequence[str] = ()


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ScoreConfig:
  """How predictions are scored.

  Attributes:
    mode: answer comparison, `pad` or `strict`.
    answer_format: `program` (execute `solution()`) or `text` (chain of
      thought: parse the final answer from the text).
    workers: executor workers.
    timeout_s: wall-clock limit per program.
    memory_mb: address-space limit per program.
  """

  mode: str = "pad"
  answer_format: str = "program"
  workers: Optional[int] = None
  timeout_s: float = 2.0
  memory_mb: int = 512


def config_dict(config: Any) -> dict[str, Any]:
  """A JSON-friendly view of a config dataclass (for completion markers)."""
  return json.loads(json.dumps(dataclasses.asdict(config), default=list))


# ---------------------------------------------------------------------------
# synthesize
# ---------------------------------------------------------------------------


def synthesize(ctx: StageContext, cfg: SynthesizeConfig) -> dict[str, Any]:
  """Runs the teacher and writes the synthetic problems."""
  summary: dict[str, Any] = {}
  if cfg.teacher != "none":
    summary["teacher"] = _run_teacher(ctx, cfg)
  sizes = {"train": cfg.synthetic_train, "validation": cfg.synthetic_validation,
           "test": cfg.synthetic_test}
  if any(sizes.values()):
    summary[SYNTHETIC] = _write_synthetic(ctx.path(SYNTHETIC), sizes, cfg)
  if not summary:
    raise StageError("nothing to synthesize: SynthesizeConfig.teacher is 'none' and "
                     "no synthetic problems are asked for")
  return summary


def _run_teacher(ctx: StageContext, cfg: SynthesizeConfig) -> dict[str, Any]:
  """Runs the teacher into `synthesize/teacher/` (completions only; verify checks them)."""
  from pad_jax.teacher import synthesize as synthesize_lib  # pylint: disable=import-outside-toplevel
  if cfg.teacher not in ("gold", "openai"):
    raise StageError(f"SynthesizeConfig.teacher: unknown teacher {cfg.teacher!r}; "
                     "expected 'gold', 'openai' or 'none'")
  openai_config = None
  if cfg.teacher == "openai":
    if not cfg.base_url or not cfg.model:
      raise StageError("SynthesizeConfig.teacher = 'openai' needs SynthesizeConfig.base_url "
                       "and SynthesizeConfig.model")
    options = dict(cfg.openai_options or {})
    if cfg.temperature is not None:
      options["temperature"] = cfg.temperature
    try:
      openai_config = synthesize_lib.OpenAIConfig(
          base_url=cfg.base_url, model=cfg.model, samples=cfg.samples,
          concurrency=cfg.concurrency, **options)
      openai_config.validate()
    except (TypeError, ValueError) as e:
      raise StageError(f"SynthesizeConfig.openai_options: {e}") from None
  out_dir = ctx.path("teacher")
  result = synthesize_lib.synthesize(cfg.teacher, cfg.benchmark, cfg.split, out_dir,
                                     limit=cfg.limit, openai_config=openai_config, verify=False)
  if result.get("stopped"):
    raise StageError(f"the teacher stopped early ({result['stopped']}); raise the limit and "
                     "run again to resume")
  completions = child.count_lines(out_dir / "completions.jsonl")
  if not completions:
    raise StageError(f"the teacher wrote no completion into {out_dir}")
  return {"completions": completions,
          "failed": child.count_lines(out_dir / "failed.jsonl")}


def _write_synthetic(out_dir: pathlib.Path, sizes: Mapping[str, int],
                     cfg: SynthesizeConfig) -> dict[str, int]:
  from pad_jax.data import programs  # pylint: disable=import-outside-toplevel
  from pad_jax.data import synthetic  # pylint: disable=import-outside-toplevel
  out_dir.mkdir(parents=True, exist_ok=True)
  counts = {}
  for split, n in sizes.items():
    if n:
      records = synthetic.generate(split, n, seed=cfg.synthetic_seed,
                                   templates=cfg.synthetic_templates)
      path = out_dir / f"{split}.jsonl"
      programs.write_programs(str(path) + ".tmp", records)
      os.replace(str(path) + ".tmp", path)
      counts[split] = len(records)
  return counts


# ---------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------


def verify(ctx: StageContext, cfg: VerifyConfig) -> dict[str, Any]:
  """Collects the verified programs of every source into `verify/programs.jsonl`.

  The teacher's completions and the synthetic training problems are executed
  here with the same executor and comparison, so both sources pass one gate.
  """
  from pad_jax.data import programs as programs_lib  # pylint: disable=import-outside-toplevel
  kept: list[Any] = []
  report: dict[str, Any] = {"mode": cfg.mode, "sources": {}}
  teacher_dir = ctx.upstream("synthesize", "teacher")
  if teacher_dir.exists():
    records, teacher_report = _teacher_programs(ctx, cfg, teacher_dir)
    kept += records
    report["sources"]["teacher"] = teacher_report
  synthetic_train = ctx.upstream("synthesize", SYNTHETIC, "train.jsonl")
  if synthetic_train.exists():
    records, synthetic_report = _verify_records(
        ctx, cfg, programs_lib.read_programs(str(synthetic_train)))
    kept += records
    report["sources"][SYNTHETIC] = synthetic_report
  if not kept:
    raise StageError("verification kept no program; see "
                     f"{ctx.path('report.json')}")
  programs_lib.write_programs(str(ctx.path("programs.jsonl")), kept)
  report["kept"] = len(kept)
  report["kept_by_source"] = dict(collections.Counter(r.teacher for r in kept))
  run_dir_lib.atomic_write_json(ctx.path("report.json"), report)
  return {"kept": len(kept), "kept_by_source": report["kept_by_source"],
          "pass_rate": {name: src.get("pass_rate") for name, src in report["sources"].items()}}


def _teacher_programs(ctx: StageContext, cfg: VerifyConfig,
                      teacher_dir: pathlib.Path) -> tuple[list[Any], dict[str, Any]]:
  """Executes the teacher's completions (`pad_jax.teacher.verify.verify_dir`)."""
  from pad_jax.data import programs as programs_lib  # pylint: disable=import-outside-toplevel
  from pad_jax.teacher import verify as verify_lib  # pylint: disable=import-outside-toplevel
  out_dir = ctx.path("teacher")
  out_dir.mkdir(parents=True, exist_ok=True)
  config = verify_lib.VerifyConfig(mode=cfg.mode, workers=cfg.workers, timeout_s=cfg.timeout_s,
                                   memory_mb=cfg.memory_mb)
  bar = ctx.bar(total=child.count_lines(teacher_dir / "completions.jsonl"), unit="prog",
                desc_suffix="teacher")
  report = verify_lib.verify_dir(teacher_dir, config, out_dir=out_dir)
  bar.update(bar.total - bar.n)
  bar.close()
  records = programs_lib.read_programs(str(out_dir / "programs.jsonl"))
  return records, report


def _verify_records(ctx: StageContext, cfg: VerifyConfig,
                    records: Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
  """Executes each record's program; keeps those whose value matches its answer."""
  from pad_jax import answers  # pylint: disable=import-outside-toplevel
  results = execute(ctx, [r.program for r in records], workers=cfg.workers,
                    timeout_s=cfg.timeout_s, memory_mb=cfg.memory_mb, label=SYNTHETIC)
  kept, statuses = [], collections.Counter()
  by_variant: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
  for record, result in zip(records, results):
    correct = result.status == "ok" and answers.answers_match(result.value, record.answer, cfg.mode)
    statuses[result.status if correct or result.status != "ok" else "wrong_answer"] += 1
    by_variant[str(record.prompt_variant)][1] += 1
    if correct:
      kept.append(record)
      by_variant[str(record.prompt_variant)][0] += 1
  return kept, {
      "programs": len(records), "kept": len(kept),
      "pass_rate": len(kept) / max(1, len(records)),
      "status_counts": dict(statuses),
      "pass_rate_by_variant": {v: k / n for v, (k, n) in sorted(by_variant.items())},
  }


def execute(ctx: StageContext, programs: Sequence[str], *, workers: Optional[int],
            timeout_s: float, memory_mb: int, mode: str = "return",
            label: Optional[str] = None) -> list[Any]:
  """Runs `programs` in the sandboxed executor with a progress bar."""
  from pad_jax.execution import Executor  # pylint: disable=import-outside-toplevel
  bar = ctx.bar(total=len(programs), unit="prog", desc_suffix=label)
  results = []
  with Executor(workers=workers, timeout_s=timeout_s, memory_mb=memory_mb, mode=mode) as executor:
    for result in executor.imap(programs):
      results.append(result)
      bar.update(1)
  bar.close()
  return results


# ---------------------------------------------------------------------------
# decode
# ---------------------------------------------------------------------------


def eval_sets(ctx: StageContext, cfg: DecodeConfig) -> dict[str, list[dict[str, Any]]]:
  """The eval sets as rows `{id, question, answer}` (synthetic first)."""
  from pad_jax.data import benchmarks  # pylint: disable=import-outside-toplevel
  from pad_jax.data import programs  # pylint: disable=import-outside-toplevel
  sets: dict[str, list[dict[str, Any]]] = {}
  if cfg.synthetic:
    path = ctx.upstream("synthesize", SYNTHETIC, "test.jsonl")
    if not path.exists():
      raise StageError(f"DecodeConfig.synthetic is True but {path} does not exist; "
                       "set SynthesizeConfig.synthetic_test")
    sets[SYNTHETIC] = [{"id": r.id, "question": r.question, "answer": r.answer}
                       for r in programs.read_programs(str(path))]
  for name in cfg.benchmarks:
    sets[name] = [{"id": e.id, "question": e.question, "answer": e.answer}
                  for e in benchmarks.load(name, cfg.split)]
  if cfg.limit is not None:
    sets = {name: rows[:cfg.limit] for name, rows in sets.items()}
  if not sets:
    raise StageError("nothing to decode: DecodeConfig.benchmarks is empty and "
                     "DecodeConfig.synthetic is False")
  return sets


def _infer_flags(cfg: DecodeConfig) -> list[str]:
  flags = [f"--decode={cfg.decode}", f"--max_decode_length={cfg.max_decode_length}"]
  if cfg.decode == "beam":
    flags.append(f"--beam_size={cfg.beam_size}")
  if cfg.decode == "sample":
    flags.append(f"--temperature={cfg.temperature}")
    if cfg.top_k:
      flags.append(f"--top_k={cfg.top_k}")
  if cfg.num_decodes > 1:
    flags.append(f"--num_decodes={cfg.num_decodes}")
  if cfg.batch_size:
    flags.append(f"--batch_size={cfg.batch_size}")
  return flags + list(cfg.extra_flags)


def decode(ctx: StageContext, cfg: DecodeConfig, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
  """Decodes every eval set with the trained student (`python -m pad_jax.infer`).

  Args:
    ctx: the stage context.
    cfg: the decode config.
    checkpoint: from the train stage's summary: `checkpoint_dir` and the
      `gin_files`/`gin_search_paths`/`bindings` that define the model.

  Returns:
    The stage summary: examples per eval set.
  """
  sets = eval_sets(ctx, cfg)
  summary = {"examples": {name: len(rows) for name, rows in sets.items()}}
  for name, rows in sets.items():
    run_dir_lib.atomic_write_text(ctx.path(f"{name}.inputs.jsonl"),
                                  "".join(json.dumps(r) + "\n" for r in rows))
  # One infer process for all eval sets (one model load and compilation);
  # infer appends per batch and skips finished ids, so a rerun resumes.
  combined = [{**r, "id": f"{name}/{r['id']}", "eval_set": name, "example_id": r["id"]}
              for name, rows in sets.items() for r in rows]
  inputs = ctx.path("inputs.jsonl")
  run_dir_lib.atomic_write_text(inputs, "".join(json.dumps(r) + "\n" for r in combined))
  partial = ctx.path("predictions.jsonl.partial")
  bar = ctx.bar(total=len(combined), unit="ex", desc_suffix="+".join(sets))

  def poll():
    bar.n = min(child.count_lines(partial), bar.total)
    bar.refresh()

  flags = [f"--checkpoint_dir={checkpoint['checkpoint_dir']}", f"--input={inputs}",
           f"--output={partial}"] + _model_flags(ctx, checkpoint) + _infer_flags(cfg)
  child.run_child(child.python_command("pad_jax.infer", *flags), ctx.path("infer.log"), poll=poll)
  bar.close()
  by_set: dict[str, list[dict[str, Any]]] = {name: [] for name in sets}
  for row in read_jsonl(partial):
    by_set[row["eval_set"]].append({**row, "id": row["example_id"]})
  for name, rows in by_set.items():
    if len({r["id"] for r in rows}) != len(sets[name]):
      raise StageError(f"{partial}: {len(rows)} predictions for the {len(sets[name])} "
                       f"questions of {name}")
    run_dir_lib.atomic_write_text(ctx.path(f"{name}.jsonl"),
                                  "".join(json.dumps(r) + "\n" for r in rows))
  os.replace(partial, ctx.path("predictions.jsonl"))
  return summary


# Modules whose configurables a model gin file may create lazily, after gin
# has locked its config (e.g. `synthetic.demo_vocabulary()` imports
# `pad_jax.vocab` when called): imported while the config is parsed.
_DECODE_IMPORTS = ("pad_jax.vocab",)


def _model_flags(ctx: StageContext, checkpoint: Mapping[str, Any]) -> list[str]:
  imports = ctx.path("imports.gin")
  run_dir_lib.atomic_write_text(imports, "from __gin__ import dynamic_registration\n" + "".join(
      f"import {m}\n" for m in _DECODE_IMPORTS))
  flags = [f"--gin_search_paths={','.join(checkpoint['gin_search_paths'])}",
           f"--gin_file={imports}"]
  flags += [f"--gin_file={f}" for f in checkpoint["model_gin_files"]]
  if checkpoint.get("vocab_dir"):
    flags.append(f"--vocab_dir={checkpoint['vocab_dir']}")
  return flags


# ---------------------------------------------------------------------------
# score
# ---------------------------------------------------------------------------


def read_jsonl(path: os.PathLike | str) -> list[dict[str, Any]]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _prediction_texts(row: Mapping[str, Any]) -> list[str]:
  """All decodes of one infer output row (K >= 1)."""
  many = row.get("predictions")
  if isinstance(many, list) and many:
    return [p if isinstance(p, str) else p.get("prediction", "") for p in many]
  return [row.get("prediction", "")]


def score(ctx: StageContext, cfg: ScoreConfig, eval_set_names: Iterable[str]) -> dict[str, Any]:
  """Executes (or parses) every prediction and compares with the gold answer."""
  summary = {}
  for name in eval_set_names:
    gold = {r["id"]: r for r in read_jsonl(ctx.upstream("decode", f"{name}.inputs.jsonl"))}
    predictions = read_jsonl(ctx.upstream("decode", f"{name}.jsonl"))
    missing = set(gold) - {p["id"] for p in predictions}
    if missing:
      raise StageError(f"{ctx.upstream('decode', name + '.jsonl')}: no prediction for "
                       f"{len(missing)} ids, e.g. {sorted(missing)[:3]}")
    rows = score_predictions(ctx, cfg, predictions, gold, label=name)
    run_dir_lib.atomic_write_text(ctx.path(f"{name}.jsonl"),
                                  "".join(json.dumps(r) + "\n" for r in rows))
    summary[name] = summarize_scores(rows)
  run_dir_lib.atomic_write_json(ctx.path("summary.json"), summary)
  return summary


def score_predictions(ctx: StageContext, cfg: ScoreConfig, predictions: Sequence[Mapping[str, Any]],
                      gold: Mapping[str, Mapping[str, Any]],
                      label: Optional[str] = None) -> list[dict[str, Any]]:
  """Scores rows of infer output against `gold[id]["answer"]`.

  With K decodes per question every decode is executed and the answer is the
  majority vote over the values of those that ran (self-consistency); the
  row's status is that of the first decode whose value won the vote (or of
  the first decode when none ran).
  """
  texts = [_prediction_texts(p) for p in predictions]
  flat = [t for ts in texts for t in ts]
  if cfg.answer_format == "program":
    results = _execute_predictions(ctx, cfg, flat, label)
  elif cfg.answer_format == "text":
    results = _parse_text_answers(flat)
  else:
    raise StageError(f"ScoreConfig.answer_format: unknown {cfg.answer_format!r}; "
                     "expected 'program' or 'text'")
  from pad_jax.execution import scoring as metrics  # pylint: disable=import-outside-toplevel
  rows, offset = [], 0
  for prediction, decodes in zip(predictions, texts):
    group = results[offset:offset + len(decodes)]
    offset += len(decodes)
    answer = gold[prediction["id"]]["answer"]
    scored = metrics.combine(group, answer, cfg.mode)  # majority vote when K > 1
    rows.append({
        "id": prediction["id"], "status": scored["status"], "value": scored["value"],
        "correct": bool(scored["correct"]), "answer": answer, "error": scored["error"],
        "prediction": decodes[0], "num_decodes": len(decodes),
        "runnable_decodes": sum(r.status == "ok" for r in group)})
  return rows


def _execute_predictions(ctx: StageContext, cfg: ScoreConfig, texts: Sequence[str],
                         label: Optional[str]) -> list[Any]:
  from pad_jax.teacher import extract_program  # pylint: disable=import-outside-toplevel
  programs = [extract_program(t) or t for t in texts]
  return execute(ctx, programs, workers=cfg.workers, timeout_s=cfg.timeout_s,
                 memory_mb=cfg.memory_mb, label=label)


@dataclasses.dataclass(frozen=True)
class _TextResult:
  status: str
  value: Optional[float]
  error: Optional[str] = None
  seconds: float = 0.0

  @property
  def ok(self) -> bool:
    return self.status == "ok"


def _parse_text_answers(texts: Sequence[str]) -> list[_TextResult]:
  from tasks import cot_tasks  # pylint: disable=import-outside-toplevel
  results = []
  for text in texts:
    value = cot_tasks.parse_answer(text)
    results.append(_TextResult("ok", value) if value is not None
                   else _TextResult("no_answer", None, "no final answer in the text"))
  return results


def summarize_scores(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  n = len(rows)
  statuses = collections.Counter(r["status"] for r in rows)
  return {"n": n, "accuracy": sum(r["correct"] for r in rows) / max(1, n),
          "runnable_rate": statuses.get("ok", 0) / max(1, n),
          "status_counts": dict(sorted(statuses.items()))}
