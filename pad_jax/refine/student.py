"""The student's own failures as refinement data (PaD stage III, source (b)).

The training questions are decoded with a trained checkpoint
(`pad_jax.decoding.files.decode_file`, resumable), every prediction is executed as
written, and the wrong ones (not runnable, or a wrong answer) become rows
paired with a verified program of the same question. Files in OUT_DIR:
`student_questions.jsonl` (the questions decoded), `student_decodes.jsonl`
(infer's output).
"""

from __future__ import annotations

import pathlib
from typing import Optional, Sequence

from pad_jax import jsonl
from pad_jax.decoding import files as decode_files
from pad_jax.decoding.settings import DecodeSettings
from pad_jax.data.programs import ProgramRecord
from pad_jax.execution.limits import ExecLimits
from pad_jax.refine import data

QUESTIONS_FILE = "student_questions.jsonl"
DECODES_FILE = "student_decodes.jsonl"


def build_student(records: Sequence[ProgramRecord], out_dir: pathlib.Path, checkpoint_dir: str,
                  gin_files: Sequence[str] = (), limits: ExecLimits = ExecLimits(), *,
                  batch_size: int = 8, max_decode_length: int = 256,
                  max_input_length: int = 512, vocab_dir: Optional[str] = None,
                  progress: bool = True) -> dict:
  """Decodes each question once (greedy) and keeps the student's wrong programs.

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
  groups = []
  for row in jsonl.read_resumable(decodes):
    record = targets.get(str(row["id"]))
    if record is None:
      continue
    candidate = data.Candidate(
        row_id=f"{record.id}/student/0", record=f"student:{record.id}",
        question_id=record.id, question=record.question, program=row["prediction"],
        target=record.program, answer=record.answer, source="student")
    groups.append((candidate.record, [candidate]))
  data.run_candidates(groups, out_dir, limits, progress, desc="student")
  return summary
