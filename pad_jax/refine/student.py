"""The student's own failures as refinement data (PaD stage III, source (b)).

The training questions are decoded greedily with a trained checkpoint
(`pad_jax.decoding.files.decode_file`, resumable), every prediction is executed
as inference executes it (`scoring.program_to_run`), and those inference would
refine (`feedback.refinement_feedback`: not runnable, no number returned, or
a given not in the question) become rows paired with a verified program of
the same question, with that feedback (`pad_jax.refine.data.judge`; any
other wrong number is counted `not_triggered` and dropped). Files in OUT_DIR: `student_questions.jsonl`
(the questions decoded), `student_decodes.jsonl` (the decoder's output).

`student_round` names the student: 0 for the student the refine stage starts
from (rows of source `student`), k for the student refinement round k trained
(source `student:round_<k>`, PaD's iterated refinement), so rows of several
rounds can share one mixture without an id colliding.
"""

from __future__ import annotations

import pathlib
from typing import Optional, Sequence

from pad_jax import jsonl
from pad_jax.decoding import files as decode_files
from pad_jax.decoding.settings import DecodeSettings
from pad_jax.data.programs import ProgramRecord
from pad_jax.execution import scoring
from pad_jax.execution.limits import ExecLimits
from pad_jax.refine import data

QUESTIONS_FILE = "student_questions.jsonl"
DECODES_FILE = "student_decodes.jsonl"


def source_name(student_round: int) -> str:
  """The rows' source for the student of refinement round `student_round` (0: `student`)."""
  if student_round < 0:
    raise ValueError(f"student_round={student_round} must be >= 0")
  return "student" if student_round == 0 else f"student:round_{student_round}"


def build_student(records: Sequence[ProgramRecord], out_dir: pathlib.Path, checkpoint_dir: str,
                  gin_files: Sequence[str] = (), limits: ExecLimits = ExecLimits(), *,
                  batch_size: int = 8, max_decode_length: int = 256,
                  max_input_length: int = 512, vocab_dir: Optional[str] = None,
                  student_round: int = 0, progress: bool = True) -> dict:
  """Decodes each question once (greedy) and keeps the failures inference would refine.

  Returns:
    infer's summary of the decode.
  """
  targets: dict[str, ProgramRecord] = {}
  for record in records:
    targets.setdefault(record.id, record)
  questions = out_dir / QUESTIONS_FILE
  if not questions.exists():
    jsonl.write_rows(questions, ({"id": r.id, "question": r.question, "answer": r.answer}
                                 for r in targets.values()))
  decodes = out_dir / DECODES_FILE
  settings = DecodeSettings(batch_size=batch_size, max_decode_length=max_decode_length,
                            max_input_length=max_input_length)
  summary = decode_files.decode_file(settings, checkpoint_dir, str(questions), str(decodes),
                                     gin_files=gin_files, vocab_dir=vocab_dir,
                                     progress=progress)
  source = source_name(student_round)
  groups = []
  for row in jsonl.read_resumable(decodes):
    record = targets.get(str(row["id"]))
    if record is None:
      continue
    candidate = data.Candidate(
        row_id=f"{record.id}/{source}/0", record=f"{source}:{record.id}",
        question_id=record.id, question=record.question, program=row["prediction"],
        target=record.program, answer=record.answer, source=source,
        executed=scoring.program_to_run(row["prediction"], limits.exec_mode))
    groups.append((candidate.record, [candidate]))
  data.run_candidates(groups, out_dir, limits, progress, desc="student")
  return summary
