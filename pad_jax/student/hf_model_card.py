"""The `README.md` model card of an exported student (`hf_export`).

What is known about a checkpoint comes from files only:

* the base model: the `model.gin` that `python -m pad_jax.convert_hf` writes
  (it names the Hugging Face directory it converted), or the
  `INITIAL_CHECKPOINT_PATH` macro of the `config.gin` that `t5x.train` saved
  (fine-tuning from such a converted checkpoint); neither: trained from
  scratch;
* the run: when the checkpoint lies in a stage directory of a pipeline run
  (`RUN_DIR/train/model/checkpoint_N`; a stage directory holds
  `STARTED.json`, `pad_jax.pipeline.run_dir`), the teacher and the data
  counts from the stages' completion markers (`DONE.json`) and the eval
  table from `RUN_DIR/report.json` (`pad_jax.pipeline.report`). These are
  read as the files they are, not through the pipeline package, which sits
  above the student.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from typing import Any, Mapping, Optional, Sequence

from gin import config_parser

import pad_jax
from pad_jax import checkpoints
from pad_jax.student import hf_import
from pad_jax.student import hf_tokenizer_vocab
from pad_jax.student import model_gin

# The pipeline's file names (`pad_jax.pipeline.run_dir`, `.report`).
_STARTED, _MARKER, _REPORT = "STARTED.json", "DONE.json", "report.json"
# The first line of a model.gin written by convert_hf, with its {hf_dir}.
_CONVERTED_RE = re.compile(
    re.escape(hf_import.MODEL_GIN_TEMPLATE.splitlines()[0]).replace(
        re.escape("{hf_dir}"), "(?P<hf_dir>.+)"))
_HUB_CACHE_RE = re.compile(r"models--([^/]+)--([^/]+)")


@dataclasses.dataclass
class RunFacts:
  """What a pipeline run directory says about its student.

  Attributes:
    run_dir: the run directory.
    stage: the stage directory holding the checkpoint (`train`, `refine`).
    teacher: the teacher in words, or None.
    data: per training source, `{"examples": n, "questions": n}`.
    programs_kept: per source, programs that passed verification.
    evals: `(eval set, n, accuracy, runnable rate)` rows of `report.json`.
    evaluated_checkpoint: the checkpoint the eval table describes.
  """

  run_dir: str
  stage: str
  teacher: Optional[str] = None
  data: dict[str, Any] = dataclasses.field(default_factory=dict)
  programs_kept: dict[str, Any] = dataclasses.field(default_factory=dict)
  evals: list[tuple[str, Any, Any, Any]] = dataclasses.field(default_factory=list)
  evaluated_checkpoint: Optional[str] = None
  max_decode_length: Optional[int] = None


@dataclasses.dataclass
class CardFacts:
  """Everything the model card says."""

  checkpoint: str
  family: str
  hf_config: Mapping[str, Any]
  num_params: int
  tokenizer: str
  command: str
  base_model: Optional[str]
  base_model_via: Optional[str]
  run: Optional[RunFacts]
  max_new_tokens: Optional[int]
  # Decoder-only: the HF id a prompt starts with (`hf_export_decoder.start_id`).
  start_id: Optional[int] = None

  @property
  def decoder_only(self) -> bool:
    """A causal LM (Llama / Qwen2), not a T5 encoder-decoder."""
    return any(str(a).endswith("ForCausalLM")
               for a in self.hf_config.get("architectures") or ())


# ------------------------------------------------------------------------------
# Gathering the facts.
# ------------------------------------------------------------------------------
def _read_json(path: pathlib.Path) -> Optional[dict[str, Any]]:
  """The JSON object in `path`, or None: the card says what is unknown."""
  try:
    return hf_tokenizer_vocab.read_json_object(path)
  except (OSError, ValueError):
    return None


def _macros(gin_file: str) -> dict[str, Any]:
  """The literal top-level macros (`NAME = value`) of a gin file."""
  try:
    text = pathlib.Path(gin_file).read_text(encoding="utf-8")
    statements = list(config_parser.ConfigParser(text, model_gin._IgnoreValues()))  # pylint: disable=protected-access
  except (OSError, SyntaxError, ValueError):
    return {}
  return {s.selector: s.value for s in statements
          if isinstance(s, config_parser.BindingStatement) and not s.scope
          and not s.arg_name}


def _converted_from(model_dir: str) -> Optional[str]:
  """The Hugging Face directory a convert_hf `model.gin` names, if it is one."""
  path = pathlib.Path(model_dir) / "model.gin"
  try:
    first = path.read_text(encoding="utf-8").splitlines()[0]
  except (OSError, IndexError):
    return None
  match = _CONVERTED_RE.fullmatch(first)
  return match.group("hf_dir") if match else None


def hub_name(hf_dir: str) -> str:
  """`org/name` for a hub download (its config's `_name_or_path`, or the
  cache path `models--org--name`), else the directory as given."""
  name = (_read_json(pathlib.Path(hf_dir) / "config.json") or {}).get(
      "_name_or_path", "")
  if isinstance(name, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", name) and (
      not os.path.exists(name)):
    return name
  match = _HUB_CACHE_RE.search(hf_dir)
  return f"{match.group(1)}/{match.group(2)}" if match else hf_dir


def base_model(checkpoint: str, gin_files: Sequence[str]
               ) -> tuple[Optional[str], Optional[str]]:
  """(base model, how it is known), or (None, None) when trained from scratch."""
  converted = _converted_from(os.path.dirname(os.path.normpath(checkpoint)))
  if converted:
    return hub_name(converted), f"converted by pad_jax.convert_hf from {converted}"
  for gin_file in gin_files:
    start = _macros(gin_file).get("INITIAL_CHECKPOINT_PATH")
    if isinstance(start, str) and start:
      source = _converted_from(os.path.dirname(os.path.normpath(start)))
      if source:
        return hub_name(source), (f"fine-tuned from {start}, converted by "
                                  f"pad_jax.convert_hf from {source}")
      return start, f"fine-tuned from the t5x checkpoint {start}"
  return None, None


def _stage_dir(checkpoint: str) -> Optional[pathlib.Path]:
  """The pipeline stage directory above a checkpoint, if there is one."""
  # Not resolved: a sweep point's stage may be a link to a shared one, and the
  # run is the one the path names.
  path = pathlib.Path(os.path.abspath(checkpoint))
  for parent in list(path.parents)[:3]:
    if (parent / _STARTED).is_file() or (parent / _MARKER).is_file():
      return parent
  return None


def _teacher(config: Mapping[str, Any]) -> Optional[str]:
  synth = config.get("synthesize", config)
  if not isinstance(synth, Mapping) or "teacher" not in synth:
    return None
  parts = [str(synth["teacher"])]
  if synth.get("model"):
    parts.append(f"model {synth['model']}")
  if synth.get("benchmark"):
    parts.append(f"on {synth['benchmark']} {synth.get('split') or ''}".strip())
  return parts[0] + (f" ({', '.join(parts[1:])})" if parts[1:] else "")


def run_facts(checkpoint: str) -> Optional[RunFacts]:
  """The facts of the pipeline run holding `checkpoint`, or None."""
  stage = _stage_dir(checkpoint)
  if stage is None:
    return None
  root = stage.parent
  markers = {name: _read_json(root / name / _MARKER) or {}
             for name in ("synthesize", "train", "decode")}
  report = _read_json(root / _REPORT) or {}
  facts = RunFacts(run_dir=str(root), stage=stage.name)
  synth = (report.get("configs", {}).get("synthesize")
           or markers["synthesize"].get("config") or {})
  facts.teacher = _teacher(synth)
  train = markers["train"].get("summary") or report.get("train") or {}
  for source, n in sorted((train.get("examples") or {}).items()):
    facts.data[source] = {"examples": n,
                          "questions": (train.get("questions") or {}).get(source)}
  facts.programs_kept = dict(report.get("programs_kept_by_source") or {})
  for name in report.get("student_status_counts") or {}:
    facts.evals.append((name, report.get(f"{name}_n"),
                        report.get(f"{name}_accuracy"),
                        report.get(f"{name}_runnable_rate")))
  decode = markers["decode"]
  facts.evaluated_checkpoint = (decode.get("summary") or {}).get("checkpoint_dir")
  facts.max_decode_length = ((decode.get("config") or {}).get("decode") or {}
                             ).get("max_decode_length")
  return facts


def gather(checkpoint: str, gin_files: Sequence[str], *,
           hf_config: Mapping[str, Any], family: str, tokenizer: str,
           command: str, num_params: int,
           start_id: Optional[int] = None) -> CardFacts:
  """The facts of the card of `checkpoint` (see the module docstring)."""
  base, via = base_model(checkpoint, gin_files)
  run = run_facts(checkpoint)
  max_new = run.max_decode_length if run else None
  if not max_new:
    for gin_file in gin_files:
      lengths = _macros(gin_file).get("TASK_FEATURE_LENGTHS")
      if isinstance(lengths, Mapping) and lengths.get("targets"):
        max_new = int(lengths["targets"])
  return CardFacts(checkpoint=checkpoint, family=family, hf_config=hf_config,
                   num_params=num_params, tokenizer=tokenizer, command=command,
                   base_model=base, base_model_via=via, run=run,
                   max_new_tokens=max_new, start_id=start_id)


# ------------------------------------------------------------------------------
# Rendering.
# ------------------------------------------------------------------------------
def _pct(value: Any) -> str:
  return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "?"


def _front_matter(facts: CardFacts) -> list[str]:
  tag = "text-generation" if facts.decoder_only else "text2text-generation"
  lines = ["---", "library_name: transformers", f"pipeline_tag: {tag}",
           "tags: [pad-jax, program-aided-distillation, math-word-problems]"]
  if facts.base_model and re.fullmatch(r"[\w.-]+/[\w.-]+", facts.base_model):
    lines.append(f"base_model: {facts.base_model}")
  return lines + ["---", ""]


def _architecture(facts: CardFacts) -> str:
  """The network in numbers, from config.json."""
  c = facts.hf_config
  head = "tied to the embedding" if c.get("tie_word_embeddings") else "untied"
  if facts.decoder_only:
    rope = (c.get("rope_parameters") or {}).get("rope_theta",
                                                c.get("rope_theta"))
    return (f"{c.get('num_hidden_layers')} layers, hidden size "
            f"{c.get('hidden_size')}, {c.get('num_attention_heads')} query / "
            f"{c.get('num_key_value_heads')} key-value heads of "
            f"{c.get('head_dim')}, SwiGLU MLP {c.get('intermediate_size')}, "
            f"RoPE theta {rope}, vocabulary {c.get('vocab_size')}, output "
            f"layer {head}")
  return (f"d_model {c.get('d_model')}, {c.get('num_layers')} encoder / "
          f"{c.get('num_decoder_layers')} decoder layers, {c.get('num_heads')} "
          f"heads, d_ff {c.get('d_ff')}, feed-forward "
          f"`{c.get('feed_forward_proj')}`, vocabulary {c.get('vocab_size')}, "
          f"output layer {head}")


def _model_section(facts: CardFacts) -> list[str]:
  base = (f"{facts.base_model} ({facts.base_model_via})" if facts.base_model
          else "none: trained from scratch")
  auto = "AutoModelForCausalLM" if facts.decoder_only else "AutoModelForSeq2SeqLM"
  return [
      "## Model", "",
      f"- Family: {facts.family}, {facts.num_params:,} parameters: "
      f"{_architecture(facts)}.",
      f"- Load with: `transformers.{auto}` and `AutoTokenizer`.",
      f"- Base model: {base}.",
      f"- Tokenizer: {facts.tokenizer}.",
      f"- Checkpoint: `{facts.checkpoint}` (step "
      f"{checkpoints.checkpoint_step(facts.checkpoint)}).", ""]


def _run_section(run: Optional[RunFacts], checkpoint: str) -> list[str]:
  if run is None:
    return ["## Training data and evaluation", "",
            "Unknown: the checkpoint is not inside a pad-jax pipeline run "
            "directory, so the teacher, the training data and the evaluation "
            "results are not recorded here.", ""]
  lines = ["## Training data", "", f"- Pipeline run: `{run.run_dir}` (stage "
           f"`{run.stage}`).", f"- Teacher: {run.teacher or 'unknown'}."]
  if run.programs_kept:
    kept = ", ".join(f"{k} {v}" for k, v in sorted(run.programs_kept.items()))
    lines.append(f"- Programs that passed verification: {kept}.")
  if run.data:
    lines += ["", "| source | training examples | questions |", "|---|---|---|"]
    lines += [f"| {s} | {d['examples']} | {d['questions']} |"
              for s, d in run.data.items()]
  else:
    lines.append("- Training data counts: unknown (no finished train stage).")
  lines += ["", "## Evaluation", ""]
  if not run.evals:
    return lines + ["Unknown: the run has no `report.json` with scored eval "
                    "sets.", ""]
  same = (run.evaluated_checkpoint and os.path.realpath(run.evaluated_checkpoint)
          == os.path.realpath(checkpoint))
  if not same:
    lines += [f"Note: these results are of `{run.evaluated_checkpoint}`, not "
              "of the exported checkpoint.", ""]
  lines += ["Programs decoded by the student, executed; accuracy = the "
            "program's value equals the answer.", "",
            "| eval set | n | accuracy | runnable |", "|---|---|---|---|"]
  lines += [f"| {name} | {n if n is not None else '?'} | {_pct(acc)} | "
            f"{_pct(runnable)} |" for name, n, acc, runnable in run.evals]
  return lines + [""]


_USAGE = '''## Usage

```python
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{path}")
model = AutoModelForSeq2SeqLM.from_pretrained("{path}")
inputs = tokenizer("Tom has 3 apples and buys 5 more. How many apples?",
                   return_tensors="pt")
program = tokenizer.decode(model.generate(**inputs, do_sample=False)[0],
                           skip_special_tokens=True)
```
'''
# A decoder-only student reads `tasks.decoder_tasks.prompt_text(question)`
# (the question and a newline) after the start id, and continues it.
_USAGE_CAUSAL = '''## Usage

```python
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{path}")
model = AutoModelForCausalLM.from_pretrained("{path}")
question = "Tom has 3 apples and buys 5 more. How many apples?"
# The prompt: {start}, then the question and a newline.
ids = {ids}
inputs = torch.tensor([ids])
output = model.generate(inputs, attention_mask=torch.ones_like(inputs),
                        do_sample=False)
program = tokenizer.decode(output[0, len(ids):], skip_special_tokens=True)
```
'''
_PROGRAM = '''
The output is a Python program whose `solution()` returns the answer; run it
only in a sandbox (pad-jax executes it with `pad_jax.execution`). Greedy
decoding here gives the same ids as `python -m pad_jax.infer --decode=greedy`.
'''


def _usage(facts: CardFacts) -> str:
  """The usage snippet: how to prompt the model and what it writes."""
  if not facts.decoder_only:
    return _USAGE.replace("{path}", "PATH_OR_HUB_ID") + _PROGRAM
  text = 'tokenizer(question + "\\n", add_special_tokens=False).input_ids'
  if facts.start_id is None:
    start, ids = "no start id (pad-jax's start row was not exported)", text
  else:
    bos = facts.start_id == facts.hf_config.get("bos_token_id")
    start = f"the start id {facts.start_id}{' (the BOS)' if bos else ''}"
    ids = f"[{facts.start_id}] + {text}"
  return (_USAGE_CAUSAL.replace("{path}", "PATH_OR_HUB_ID")
          .replace("{start}", start).replace("{ids}", ids) + _PROGRAM)


def render(facts: CardFacts) -> str:
  """The model card (`README.md`)."""
  lines = _front_matter(facts) + [
      "# pad-jax student", "",
      "A student model of Program-aided Distillation (PaD): it answers math "
      "word problems by writing a Python program. A pad-jax (t5x) "
      "checkpoint, exported to Hugging Face by",
      f"`{facts.command or 'python -m pad_jax.export_hf'}` "
      f"(pad-jax {pad_jax.__version__}).", ""]
  lines += _model_section(facts)
  lines += _run_section(facts.run, facts.checkpoint)
  lines.append(_usage(facts))
  return "\n".join(lines)
