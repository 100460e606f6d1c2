"""Every stage's config, bound in gin and checked before the first stage runs.

A pipeline gin file (`gin_configs/pipelines/*.gin`, `gin_configs/experiments/*.gin`)
binds these classes:

  SynthesizeConfig.teacher = 'gold'      # synthesize: where programs come from
  ExecLimits.timeout_s = 5.0             # verify + score: the executor's limits
  TrainConfig.run_gin_files = [...]      # train: the t5x run
  DecodeConfig.decode = 'greedy'         # decode: how the student decodes
  ScoreConfig.answer_format = 'program'  # score: execute or parse answers
  PipelineConfig.run_dir = %RUN_DIR      # the run

`ExecLimits` (pad_jax.execution.limits) is the one place of the executor's
limits and answer comparison, for the verify and the score stage alike, as
for `python -m pad_jax.verify` and `python -m pad_jax.score`.

Each config has `validate()`, raising `ConfigError("Class.field: ...")`;
`stage_configs()` builds and validates all of them, so that a mistake in the
last stage's config stops the run before the first stage starts.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Callable, Mapping, Optional, Sequence

import gin

from pad_jax.data import benchmarks
from pad_jax.decoding.settings import DecodeSettings
from pad_jax.errors import ConfigError
from pad_jax.execution import limits as limits_lib
from pad_jax.pipeline import model_files
from pad_jax.refine import mutations
from pad_jax.teacher import planning

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
GIN_CONFIGS = REPO_ROOT / "gin_configs"
# Every stage, in order; `refine` (PaD's stage III) and `stepwise_verifier`
# (the scorer of stage IV) are optional and not in the default `STAGES`.
ALL_STAGES = ("synthesize", "verify", "train", "refine", "stepwise_verifier", "decode",
              "score", "report")
OPTIONAL_STAGES = ("refine", "stepwise_verifier")
STAGES = tuple(s for s in ALL_STAGES if s not in OPTIONAL_STAGES)
TEACHERS = ("gold", "openai", "none")
TASK_FORMATS = ("program", "cot")
ANSWER_FORMATS = ("program", "text")

ExecLimits = gin.external_configurable(limits_lib.ExecLimits, "ExecLimits")


def _check(checks: Sequence[tuple[str, bool, str]], config: Any) -> None:
  """Raises ConfigError for the first `(field, ok, expected)` that is not ok."""
  for field, ok, expected in checks:
    if not ok:
      raise ConfigError(f"{type(config).__name__}.{field}: {expected}, "
                        f"got {getattr(config, field)!r}")


def _one_of(config: Any, field: str, choices: Sequence[Any]) -> tuple[str, bool, str]:
  return field, getattr(config, field) in choices, f"must be one of {tuple(choices)}"


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """The run.

  Attributes:
    run_dir: where every stage writes (macro RUN_DIR in the gin files).
    title: the report's title.
    stages: the stages to run, in order: a prefix of STAGES (e.g. to stop
      after training), with `refine` after `train` for PaD's stage III, and
      `stepwise_verifier` before `decode` to train stage IV's step verifier.
  """

  run_dir: str = "outputs/demo"
  title: str = "pad-jax run"
  stages: Sequence[str] = STAGES

  def validate(self) -> None:
    order = [ALL_STAGES.index(s) for s in self.stages if s in ALL_STAGES]
    _check([("stages", bool(self.stages) and len(order) == len(self.stages)
             and order == sorted(set(order)),
             f"must be stages out of {ALL_STAGES}, in that order"),
            ("stages", "refine" not in self.stages or "train" in self.stages,
             "has 'refine' without 'train' (refinement continues the trained student)"),
            ("stages", "stepwise_verifier" not in self.stages or "train" in self.stages,
             "has 'stepwise_verifier' without 'train' (the trained student writes its data)"),
            ], self)


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
    openai_options: more `pad_jax.teacher.planning.OpenAIConfig` fields
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
  program_style: str = "concise"  # gold teacher: pad_jax.teacher.gold.STYLES

  def validate(self) -> None:
    sizes = (self.synthetic_train, self.synthetic_validation, self.synthetic_test)
    _check([
        _one_of(self, "teacher", TEACHERS),
        _one_of(self, "benchmark", tuple(benchmarks.BENCHMARKS)),
        ("split", self.split in benchmarks.BENCHMARKS.get(self.benchmark, ()),
         f"must be a split of {self.benchmark}: {benchmarks.BENCHMARKS.get(self.benchmark)}"),
        ("limit", self.limit is None or self.limit > 0, "must be None or > 0"),
        ("synthetic_train", all(isinstance(n, int) and n >= 0 for n in sizes),
         "synthetic_{train,validation,test} must be integers >= 0"),
        ("teacher", self.teacher != "none" or any(sizes),
         "is 'none' and no synthetic problem is asked for: nothing to synthesize"),
        ("base_url", self.teacher != "openai" or bool(self.base_url and self.model),
         "teacher 'openai' needs SynthesizeConfig.base_url and SynthesizeConfig.model"),
    ], self)
    if self.teacher == "openai":
      self.openai_config().validate()

  def openai_config(self) -> planning.OpenAIConfig:
    """The teacher's OpenAIConfig (ConfigError naming openai_options when invalid)."""
    options = dict(self.openai_options or {})
    if self.temperature is not None:
      options["temperature"] = self.temperature
    try:
      config = planning.OpenAIConfig(base_url=self.base_url, model=self.model,
                                     samples=self.samples, concurrency=self.concurrency,
                                     **options)
      config.validate()
    except (TypeError, ValueError) as e:
      raise ConfigError(f"SynthesizeConfig.openai_options: {e}") from None
    return config


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How the student is trained (a real `python -m t5x.train`).

  Attributes:
    model_gin_files: gin files that define the model (and its VOCABULARY);
      relative to `gin_search_paths`. Also used to decode.
    run_gin_files: t5x run gin files (optimizer, batch, lengths, periods).
      More t5x settings go in a run gin file of your own listed here.
    gin_search_paths: where the gin files are looked up (default: the
      project's `gin_configs/`).
    macros: t5x gin macros `{NAME: value}` (Python literals) set on the t5x
      command line, with the same names as in the run files, e.g.
      `{'INITIAL_CHECKPOINT_PATH': '/ckpt/codet5_small', 'WARMUP_STEPS': 50}`.
    train_steps: `TRAIN_STEPS` (None: what the run gin file says).
    sources: which verified sources to train on (`gold`, `openai`,
      `synthetic`, ...; None: all).
    source_rates: mixing rate per source (None: proportional to size).
    data_fraction: the share of questions (with all their programs) kept,
      chosen by a seeded shuffle; the data-efficiency sweep varies it.
    data_seed: seed of that choice.
    validation_fraction: share of each source held out as `validation`.
    task_format: `program` or `cot`.
    vocabulary_macro: the gin macro of the model's vocabulary (None: let
      the task use its default vocabulary).
    vocab_dir: `--vocab_dir` for decoding (None: from the model gin files).
    env: extra environment for the t5x child (e.g. XLA_FLAGS).
    use_cached_tasks: train from a seqio cache of the data (made by
      `seqio.scripts.cache_tasks_main` in the stage; t5x then does no
      tokenization at start-up, docs/scaling.md): True, False, or None = when
      the selected programs number at least `cache_min_examples`. Program
      format only.
    cache_min_examples: the size from which None means "cache".
  """

  model_gin_files: Sequence[str] = ("models/tiny.gin",)
  run_gin_files: Sequence[str] = ("runs/demo_train.gin",)
  gin_search_paths: Optional[Sequence[str]] = None
  macros: Optional[Mapping[str, Any]] = None
  train_steps: Optional[int] = None
  sources: Optional[Sequence[str]] = None
  source_rates: Optional[Mapping[str, float]] = None
  data_fraction: float = 1.0
  data_seed: int = 0
  validation_fraction: float = 0.05
  task_format: str = "program"
  vocabulary_macro: Optional[str] = "VOCABULARY"
  vocab_dir: Optional[str] = None
  env: Optional[Mapping[str, str]] = None
  use_cached_tasks: Optional[bool] = None
  cache_min_examples: int = 100_000

  def search_paths(self) -> list[str]:
    return [str(pathlib.Path(p).absolute()) for p in (self.gin_search_paths or [str(GIN_CONFIGS)])]

  def find_gin_file(self, name: str) -> pathlib.Path:
    """The gin file `name` in the search paths (ConfigError if it is in none)."""
    for base in [""] + self.search_paths():
      candidate = pathlib.Path(base, name)
      if candidate.is_file():
        return candidate
    raise ConfigError(f"TrainConfig: gin file {name!r} not found in {self.search_paths()}")

  def decoder_only(self) -> bool:
    """Whether `model_gin_files` define a decoder-only student: their last `MODEL`
    (includes followed) is t5x's `DecoderOnlyModel`. The train stage then
    registers its data with the decoder-only (prefix LM) task layout."""
    refs: list[str] = []
    for name in self.model_gin_files:
      model_files.model_refs(self.find_gin_file(name), self.search_paths(), refs)
    return bool(refs) and refs[-1].rsplit(".", 1)[-1] == "DecoderOnlyModel"

  def validate(self) -> None:
    _check([
        ("model_gin_files", bool(self.model_gin_files), "must name at least one model gin file"),
        ("data_fraction", 0 < self.data_fraction <= 1, "must be in (0, 1]"),
        ("validation_fraction", 0 <= self.validation_fraction < 1, "must be in [0, 1)"),
        ("train_steps", self.train_steps is None or self.train_steps > 0, "must be None or > 0"),
        _one_of(self, "task_format", TASK_FORMATS),
        ("macros", all(isinstance(k, str) and k.isidentifier() for k in (self.macros or {})),
         "keys must be gin macro names"),
        ("use_cached_tasks", not (self.use_cached_tasks and self.task_format != "program"),
         "a seqio cache is for task_format 'program' only"),
        ("cache_min_examples", self.cache_min_examples > 0, "must be > 0"),
    ], self)
    for name in list(self.model_gin_files) + list(self.run_gin_files):
      self.find_gin_file(name)
    if self.decoder_only():  # the layout tasks.decoder_tasks gives; no seqio cache of it
      _check([
          ("use_cached_tasks", not self.use_cached_tasks,
           "must be None or False with a decoder-only student (model_gin_files: "
           "DecoderOnlyModel); the seqio cache has the encoder-decoder layout only"),
          ("task_format", self.task_format == "program",
           "must be 'program' with a decoder-only student (model_gin_files: DecoderOnlyModel)"),
          ("vocabulary_macro", bool(self.vocabulary_macro),
           "must name the model's vocabulary macro with a decoder-only student"),
      ], self)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DecodeConfig(DecodeSettings):
  """What the trained student decodes, and how (`python -m pad_jax.infer`).

  How: the fields of `pad_jax.decoding.settings.DecodeSettings` (`decode`,
  `num_decodes`, `beam_size`, `alpha`, `temperature`, `top_k`,
  `max_decode_length`, `max_input_length`, `batch_size`, `seed`,
  `step_candidates`, `step_verifier`, `step_verifier_weight`, `refine_rounds`), bound as
  `DecodeConfig.decode = 'greedy'` etc., with its defaults and its checks;
  the decode stage passes them to infer as flags (`infer_flags()`).
  `refine_rounds` needs a student trained on refinement data (the `refine`
  stage).

  What (the pipeline's own fields):

  Attributes:
    benchmarks: benchmark names to decode (`gsm8k`, `svamp`, `asdiv`, ...).
    split: their split.
    synthetic: also decode the synthetic held-out problems.
    limit: at most N examples per eval set (None: all).
    limits: `{eval set: N}` per set (`synthetic`, `gsm8k`, ...), overriding
      `limit` for the sets it names, e.g. 1,000 synthetic problems and the
      first 250 of each benchmark.
    time_each_set: decode each eval set in its own infer child, so that the
      score stage reports seconds per question per set (each child's time
      includes restoring the checkpoint and compiling).
  """

  benchmarks: Sequence[str] = ("gsm8k",)
  split: str = "test"
  synthetic: bool = True
  limit: Optional[int] = None
  limits: Optional[Mapping[str, int]] = None
  time_each_set: bool = False

  def set_limit(self, name: str) -> Optional[int]:
    """At most how many examples of eval set `name` are decoded (None: all)."""
    return dict(self.limits or {}).get(name, self.limit)

  def validate(self) -> None:
    unknown = [b for b in self.benchmarks if b not in benchmarks.BENCHMARKS]
    _check([
        ("benchmarks", not unknown, f"unknown {unknown}; known: {tuple(benchmarks.BENCHMARKS)}"),
        ("split", all(self.split in benchmarks.BENCHMARKS[b] for b in self.benchmarks
                      if b not in unknown), "must be a split of every benchmark"),
        ("synthetic", bool(self.benchmarks) or self.synthetic,
         "is False and DecodeConfig.benchmarks is empty: nothing to decode"),
        ("limit", self.limit is None or self.limit > 0, "must be None or > 0"),
        ("limits", all(isinstance(n, int) and n > 0 for n in dict(self.limits or {}).values()),
         "values must be integers > 0"),
        ("limits", set(dict(self.limits or {})) <= set(self.benchmarks) | {"synthetic"},
         f"names a set that is not decoded; the sets are {['synthetic'] + list(self.benchmarks)}"),
    ], self)
    super().validate()  # the decode settings, as infer checks them


@gin.configurable
@dataclasses.dataclass(frozen=True)
class RefineConfig:
  """PaD's stage III: refinement data, then the student trained further on it.

  The `refine` stage (after `train`) writes refinement rows (question +
  faulty program + interpreter feedback -> verified program) from (a)
  mutations of the verified programs and (b) the trained student's own
  failures on the training questions (`python -m pad_jax.refine`; only
  programs inference would refine, `feedback.refinement_feedback`), then
  continues training the student with t5x on them mixed with the original
  programs. Decoding with `DecodeConfig.refine_rounds` uses that student.

  Attributes:
    sources: verified sources whose programs are mutated and whose questions
      the student decodes (None: those the train stage used).
    limit: only the first N programs of each source (None: all).
    operators: mutation operators (`all`, or names from
      `pad_jax.refine.mutations.OPERATORS`).
    per_operator: mutants per operator and program (0: no error injection).
    student_failures: also decode the training questions with the trained
      student and keep its wrong programs.
    seed: seed of the mutation choices.
    run_gin_files: the t5x run file(s) of the continued training
      (looked up like `TrainConfig.run_gin_files`).
    train_steps: steps of the continued training (`TRAIN_STEPS` counts from
      the trained checkpoint's step; None: the run file's).
    macros: more t5x macros for the continued training.
    max_decode_length: the student's decode length for its failures.
    batch_size: the student's decode batch size.
    rounds: refinement rounds (PaD's iterated refinement). Round 1 is the
      data above and training from the trained student; round k > 1 decodes
      the training questions with round k-1's student, adds its failures to
      the refinement rows and continues training from round k-1's checkpoint
      (`train_steps` more steps each round). 1: a single round.
  """

  sources: Optional[Sequence[str]] = None
  limit: Optional[int] = None
  operators: Sequence[str] = ("all",)
  per_operator: int = 1
  student_failures: bool = True
  seed: int = 0
  run_gin_files: Sequence[str] = ("runs/pad_refine.gin",)
  train_steps: Optional[int] = None
  macros: Optional[Mapping[str, Any]] = None
  max_decode_length: int = 256
  batch_size: int = 32
  rounds: int = 1

  def validate(self) -> None:
    known = ("all",) + tuple(mutations.OPERATORS)
    rounds_ok = isinstance(self.rounds, int) and not isinstance(self.rounds, bool) \
        and self.rounds >= 1
    _check([
        ("limit", self.limit is None or self.limit > 0, "must be None or > 0"),
        ("operators", bool(self.operators) and all(o in known for o in self.operators),
         f"must be operators out of {known}"),
        ("per_operator", self.per_operator >= 0, "must be >= 0"),
        ("per_operator", self.per_operator > 0 or self.student_failures,
         "is 0 and student_failures is False: no refinement data"),
        ("train_steps", self.train_steps is None or self.train_steps > 0, "must be None or > 0"),
        ("max_decode_length", self.max_decode_length >= 1, "must be >= 1"),
        ("batch_size", self.batch_size >= 1, "must be >= 1"),
        ("rounds", rounds_ok, "must be an integer >= 1"),
        ("rounds", not rounds_ok or self.rounds == 1 or self.student_failures,
         "is > 1 but student_failures is False: rounds after the first have no new data "
         "(they decode the training questions with the last round's student)"),
        ("macros", all(isinstance(k, str) and k.isidentifier() for k in (self.macros or {})),
         "keys must be gin macro names"),
    ], self)
    for name in self.run_gin_files:
      TrainConfig().find_gin_file(name)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class StepwiseVerifierConfig:
  """The scorer of PaD's stage IV: step-verifier data, then the verifier trained with t5x.

  The `stepwise_verifier` stage (after `train` and `refine`, before
  `decode`; off unless in `PipelineConfig.stages`) labels the line prefixes
  of one verified program per training question and of `samples` programs
  the trained student samples for it (`python -m
  pad_jax.stepwise.verifier_data`: a prefix is `correct` when one of
  `completions` completions from it reaches the gold answer), trains the
  verifier on them (`python -m t5x.train`, `run_gin_files`), and the decode
  stage gives its checkpoint to infer as `step_verifier`, mixed with the
  student's log-probability by `DecodeConfig.step_verifier_weight`
  (docs/stepwise.md). `DecodeConfig.decode` must then be `stepwise_beam`.

  Attributes:
    sources: verified sources whose questions are labelled (None: those the
      train stage trained on).
    limit: only the first N questions of each source (None: all).
    samples: student programs sampled per question.
    completions: completions sampled per prefix to label it.
    temperature: the student's sampling temperature.
    top_k: its top-k (0: off).
    max_decode_length: the most ids of a student program.
    max_input_length: the student's input budget.
    batch_size: questions labelled per batch.
    seed: sampling seed.
    model_gin_files: the verifier's model gin files (None: the student's).
    run_gin_files: its t5x run file(s) (looked up like
      `TrainConfig.run_gin_files`).
    train_steps: `TRAIN_STEPS` of the verifier (None: the run file's).
    macros: more t5x macros, e.g. `{'INITIAL_CHECKPOINT_PATH': ...}` (the
      converted CodeT5 the verifier starts from; default: from scratch).
    from_student: start the verifier from the trained student's parameters
      (it already reads the questions and programs; its optimizer state and
      step count start afresh). Needs the student's model gin files
      (`model_gin_files` None) and no INITIAL_CHECKPOINT_PATH in `macros`.

  With a decoder-only student (`TrainConfig.decoder_only()`) the verifier
  needs `model_gin_files` of its own and `from_student` False
  (`check_student`, before the first stage).
  """

  sources: Optional[Sequence[str]] = None
  limit: Optional[int] = None
  samples: int = 4
  completions: int = 4
  temperature: float = 1.0
  top_k: int = 0
  max_decode_length: int = 256
  max_input_length: int = 512
  batch_size: int = 8
  seed: int = 0
  model_gin_files: Optional[Sequence[str]] = None
  run_gin_files: Sequence[str] = ("runs/step_verifier.gin",)
  train_steps: Optional[int] = None
  macros: Optional[Mapping[str, Any]] = None
  from_student: bool = False

  def validate(self) -> None:
    _check([
        ("limit", self.limit is None or self.limit > 0, "must be None or > 0"),
        ("from_student", not self.from_student or (
            self.model_gin_files is None
            and "INITIAL_CHECKPOINT_PATH" not in (self.macros or {})),
         "needs model_gin_files None (the student's network) and no "
         "INITIAL_CHECKPOINT_PATH in macros"),
        ("samples", self.samples >= 0, "must be >= 0"),
        ("completions", self.completions >= 1, "must be >= 1"),
        ("temperature", self.temperature > 0, "must be > 0"),
        ("top_k", self.top_k >= 0, "must be >= 0 (0: off)"),
        ("max_decode_length", self.max_decode_length >= 1, "must be >= 1"),
        ("max_input_length", self.max_input_length >= 2, "must be >= 2 (<s> and </s>)"),
        ("batch_size", self.batch_size >= 1, "must be >= 1"),
        ("seed", self.seed >= 0, "must be >= 0"),
        ("train_steps", self.train_steps is None or self.train_steps > 0, "must be None or > 0"),
        ("run_gin_files", bool(self.run_gin_files), "must name at least one run gin file"),
        ("macros", all(isinstance(k, str) and k.isidentifier() for k in (self.macros or {})),
         "keys must be gin macro names"),
    ], self)
    for name in list(self.model_gin_files or ()) + list(self.run_gin_files):
      TrainConfig().find_gin_file(name)

  def check_student(self, train: TrainConfig) -> None:
    """What the verifier asks of the student (`train`), checked before the first stage.

    The verifier is an encoder-decoder (`tasks/verifier_tasks.py`,
    `stepwise_scorers.VerifierScorer`): with a decoder-only student
    (`train.decoder_only()`) it can neither start from the student's
    checkpoint (`from_student`) nor be built from the student's model files
    (`model_gin_files` None); it is trained from scratch, or from a converted
    CodeT5 (`macros` INITIAL_CHECKPOINT_PATH), on model files of its own.
    """
    if not train.decoder_only():
      return
    student = (f"a decoder-only student (TrainConfig.model_gin_files "
               f"{list(train.model_gin_files)}: DecoderOnlyModel)")
    instead = ("set StepwiseVerifierConfig.from_student = False and give the verifier model "
               "files of its own, e.g. StepwiseVerifierConfig.model_gin_files = "
               "['models/tiny.gin'] (trained from scratch, or from a converted CodeT5 with "
               "macros INITIAL_CHECKPOINT_PATH)")
    _check([
        ("from_student", not self.from_student,
         f"must be False with {student}: the T5 verifier cannot start from its checkpoint; "
         f"{instead}"),
        ("model_gin_files", bool(self.model_gin_files),
         f"must name the verifier's own (encoder-decoder) model files with {student}; "
         f"{instead}"),
    ], self)


def _check_across_stages(configs: Mapping[str, Mapping[str, Any]]) -> None:
  """What one stage's config asks of another's (ConfigError naming the field)."""
  if "stepwise_verifier" in configs:
    parts = configs["stepwise_verifier"]
    parts["stepwise_verifier"].check_student(parts["train"])
  if "stepwise_verifier" in configs and "decode" in configs:
    decode = configs["decode"]["decode"]
    _check([
        ("decode", decode.decode == "stepwise_beam",
         "must be 'stepwise_beam' with the stepwise_verifier stage (its verifier scores steps)"),
        ("step_verifier", decode.step_verifier is None,
         "must be None with the stepwise_verifier stage (the stage gives its verifier)"),
        ("step_verifier_weight", decode.step_verifier_weight > 0,
         "is 0 with the stepwise_verifier stage: its verifier would not be used"),
    ], decode)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ScoreConfig:
  """How predictions are scored (the executor's limits are `ExecLimits`).

  Attributes:
    answer_format: `program` (execute `solution()`) or `text` (chain of
      thought: parse the final answer from the text).
  """

  answer_format: str = "program"

  def validate(self) -> None:
    _check([_one_of(self, "answer_format", ANSWER_FORMATS)], self)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ReportConfig:
  """Attributes: title: the report's heading (default: PipelineConfig.title)."""

  title: Optional[str] = None

  def validate(self) -> None:
    pass


# What each stage's config is: one dataclass, or several for the stages that
# also execute programs. Built (so gin binds them) and validated up front.
_FACTORIES: dict[str, Callable[[], Mapping[str, Any]]] = {
    "synthesize": lambda: {"synthesize": SynthesizeConfig()},
    "verify": lambda: {"limits": ExecLimits()},
    "train": lambda: {"train": TrainConfig()},
    "refine": lambda: {"refine": RefineConfig(), "train": TrainConfig(), "limits": ExecLimits()},
    "stepwise_verifier": lambda: {"stepwise_verifier": StepwiseVerifierConfig(),
                                  "train": TrainConfig(), "limits": ExecLimits()},
    "decode": lambda: {"decode": DecodeConfig()},
    "score": lambda: {"score": ScoreConfig(), "limits": ExecLimits()},
    "report": lambda: {"report": ReportConfig()},
}


def stage_configs(stages: Sequence[str]) -> dict[str, dict[str, Any]]:
  """`{stage: {name: config}}` for `stages`, every config validated.

  Raises:
    ConfigError: the first invalid field, named `Class.field`.
  """
  configs = {stage: dict(_FACTORIES[stage]()) for stage in stages}
  for parts in configs.values():
    for config in parts.values():
      config.validate()
  _check_across_stages(configs)
  return configs


def config_dict(configs: Mapping[str, Any]) -> dict[str, Any]:
  """A JSON-friendly view of a stage's configs (recorded in its markers)."""
  return json.loads(json.dumps({name: dataclasses.asdict(c) for name, c in configs.items()},
                               default=list))
