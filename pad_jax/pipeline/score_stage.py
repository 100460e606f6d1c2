"""The score stage: execute (or parse) every prediction and compare with the gold answer.

Programs go through the one scoring path (`pad_jax.execution.scoring`, as
`python -m pad_jax.score` and the seqio metric): a prediction that is a
program runs as written, K decodes are majority-voted, and the output is
appended row by row so a killed stage resumes. Chain-of-thought predictions
(`ScoreConfig.answer_format = 'text'`) have their final answer parsed instead.

Outputs: `score/<eval_set>.jsonl` (`id`, `status`, `value`, `correct`,
`error`, `answer`, `prediction`, `num_programs`, `runnable_programs`) and
`score/summary.json` (`{eval_set: {n, accuracy, runnable_rate, status_counts}}`).
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from pad_jax import atomic
from pad_jax import jsonl
from pad_jax.execution import ExecResult
from pad_jax.execution import scoring
from pad_jax.execution.limits import ExecLimits
from pad_jax.pipeline.configs import ScoreConfig
from pad_jax.pipeline.stage import StageContext, StageError
from tasks import cot_tasks


def prediction_texts(row: Mapping[str, Any]) -> list[str]:
  """All decodes of one infer output row (K >= 1)."""
  many = row.get("predictions")
  if isinstance(many, list) and many:
    return [p if isinstance(p, str) else p.get("prediction", "") for p in many]
  return [row.get("prediction", "")]


def run(ctx: StageContext, configs: Mapping[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
  """Scores every eval set the decode stage wrote."""
  cfg: ScoreConfig = configs["score"]
  limits: ExecLimits = configs["limits"]
  summary = {}
  for name in upstream["decode"]["summary"]["examples"]:
    rows = _rows(ctx, name)
    scored, _ = scoring.score_to_file(
        rows, ctx.path(f"{name}.jsonl"), limits,
        results=_parsed_answers(limits) if cfg.answer_format == "text" else None,
        make_bar=lambda total, name=name: ctx.bar(total=total, unit="prog", desc_suffix=name))
    summary[name] = scoring.summarize(scored)
    summary[name]["status_counts"] = {k: v for k, v in summary[name]["status_counts"].items() if v}
  atomic.write_json(ctx.path("summary.json"), summary)
  return summary


def _rows(ctx: StageContext, name: str) -> list[dict[str, Any]]:
  """The rows to score: every prediction with its gold answer."""
  gold = {r["id"]: r for r in jsonl.read_rows(ctx.upstream("decode", f"{name}.inputs.jsonl"))}
  predictions = jsonl.read_rows(ctx.upstream("decode", f"{name}.jsonl"))
  missing = set(gold) - {p["id"] for p in predictions}
  if missing:
    raise StageError(f"{ctx.upstream('decode', name + '.jsonl')}: no prediction for "
                     f"{len(missing)} ids, e.g. {sorted(missing)[:3]}")
  rows = []
  for prediction in predictions:
    texts = prediction_texts(prediction)
    answer = gold[prediction["id"]]["answer"]
    rows.append({"id": prediction["id"], "programs": texts if len(texts) > 1 else texts[0],
                 "answer": answer, "keep": {"answer": answer, "prediction": texts[0]}})
  return rows


def _parsed_answers(limits: ExecLimits):
  """Scores chain-of-thought texts by the final answer they state (nothing runs)."""
  def results(rows: Sequence[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
      texts = row["programs"] if isinstance(row["programs"], list) else [row["programs"]]
      parsed = [cot_tasks.parse_answer(text) for text in texts]
      yield scoring.combine([ExecResult("ok", v, None, 0.0) if v is not None else
                             ExecResult("no_answer", None, "no final answer in the text", 0.0)
                             for v in parsed], row["answer"], limits.answer_mode)
  return results
