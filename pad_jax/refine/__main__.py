r"""Refinement training data: python -m pad_jax.refine.

  python -m pad_jax.refine --programs=outputs/teacher_gold/programs.jsonl \
      --out=outputs/refine [--operators=all] [--per_operator=1] \
      [--checkpoint_dir=MODEL_DIR [--gin_file=...] [--student_round=K]]

Reads a program dataset (verified programs), writes OUT/refine.jsonl (one
row per faulty program: question, program, feedback, target, answer,
source), OUT/progress.jsonl and OUT/report.json. (a) every mutation operator
is applied to every program and the mutants are executed in the sandbox;
(b) with --checkpoint_dir, the student decodes the questions too. Only the
programs inference would refine become rows, with the feedback inference
gives (`pad_jax.execution.feedback.refinement_feedback`: not runnable, or no
number returned); a wrong number is counted and dropped. Re-running the same command resumes (finished
programs are skipped, no row is written twice). Bad input exits with status
2 and one line `error: file:line: field 'f': ...`. The executor flags are
every command's (`pad_jax.execution.flags`).
"""

from __future__ import annotations

import json
import pathlib

from absl import flags

from pad_jax import atomic
from pad_jax import cli
from pad_jax.data.programs import read_programs
from pad_jax.errors import ConfigError
from pad_jax.execution import flags as exec_flags
from pad_jax.refine import data
from pad_jax.refine import mutations


def _operators() -> list[str]:
  if _OPERATORS.value == ["all"]:
    return list(mutations.OPERATORS)
  unknown = [o for o in _OPERATORS.value if o not in mutations.MUTATORS]
  if unknown:
    raise ConfigError(f"--operators: unknown {unknown[0]!r}; known: all, "
                      f"{', '.join(mutations.OPERATORS)}")
  return list(_OPERATORS.value)


def main(argv: list[str]) -> int:
  cli.no_arguments(argv)
  cli.require(programs=_PROGRAMS.value, out=_OUT.value)
  if _PER_OPERATOR.value < 0:
    raise ConfigError("--per_operator: must be >= 0")
  operators = _operators()
  limits = exec_flags.limits()
  records = read_programs(_PROGRAMS.value)
  if _LIMIT.value:
    records = records[:_LIMIT.value]
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  if _PER_OPERATOR.value:
    data.build_mutations(records, out, limits, operators, _PER_OPERATOR.value, _SEED.value,
                         progress=_PROGRESS.value)
  if _CHECKPOINT_DIR.value:
    # Deferred: the student's decode needs JAX and t5x, mutations alone do not.
    from pad_jax.refine import student  # pylint: disable=g-import-not-at-top
    student.build_student(records, out, _CHECKPOINT_DIR.value, _GIN_FILE.value, limits,
                          batch_size=_BATCH_SIZE.value,
                          max_decode_length=_MAX_DECODE_LENGTH.value,
                          vocab_dir=_VOCAB_DIR.value, student_round=_STUDENT_ROUND.value,
                          progress=_PROGRESS.value)
  report = dict(data.summarize(out), programs=_PROGRAMS.value, operators=operators,
                per_operator=_PER_OPERATOR.value, seed=_SEED.value,
                checkpoint_dir=_CHECKPOINT_DIR.value, student_round=_STUDENT_ROUND.value)
  atomic.write_json(out / data.REPORT_FILE, report)
  print(json.dumps({k: report[k] for k in ("rows", "source_programs", "questions")}))
  return 0


if __name__ == "__main__":
  _PROGRAMS = flags.DEFINE_string("programs", None, "Program dataset JSONL (verified programs).")
  _OUT = flags.DEFINE_string("out", None, "Output directory (refine.jsonl, progress.jsonl, "
                             "report.json); re-running resumes.")
  _OPERATORS = flags.DEFINE_list("operators", ["all"], "Mutation operators: all, or a comma "
                                 f"list of {', '.join(mutations.OPERATORS)}.")
  _PER_OPERATOR = flags.DEFINE_integer("per_operator", 1, "Mutants drawn per operator and "
                                       "program (0: no error injection).")
  _SEED = flags.DEFINE_integer("seed", 0, "Seed of the mutation choices.")
  _LIMIT = flags.DEFINE_integer("limit", None, "Only the first N programs.", lower_bound=1)
  _CHECKPOINT_DIR = flags.DEFINE_string("checkpoint_dir", None, "A trained student (checkpoint "
                                        "or MODEL_DIR): also keep its own wrong programs.")
  _GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "The student's model gin file "
                                        "(default: next to the checkpoint).")
  _VOCAB_DIR = flags.DEFINE_string("vocab_dir", None, "Vocabulary overriding the model's.")
  _BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Student decode batch size.",
                                     lower_bound=1)
  _MAX_DECODE_LENGTH = flags.DEFINE_integer("max_decode_length", 256, "Student decode length.",
                                            lower_bound=1)
  _STUDENT_ROUND = flags.DEFINE_integer(
      "student_round", 0, "Which refinement round trained --checkpoint_dir (0: the PaD "
      "student); its rows' source is `student` or `student:round_<K>`.", lower_bound=0)
  _PROGRESS = flags.DEFINE_boolean("progress", True, "Show progress bars.")
  exec_flags.define()
  flags.adopt_module_key_flags(exec_flags)
  cli.run(main)
