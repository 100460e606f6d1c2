"""Teacher stage: program synthesis, the gold-rationale teacher, extraction, verification.

Submodules are imported lazily by callers; this package imports nothing heavy.
`extract_program` and `gold_program` are the two functions other stages use.
"""

from pad_jax.teacher.extraction import extract_program


def gold_program(example):
  """See `pad_jax.teacher.gold.gold_program` (imported lazily)."""
  from pad_jax.teacher import gold  # pylint: disable=g-import-not-at-top
  return gold.gold_program(example)


__all__ = ["extract_program", "gold_program"]
