"""Teacher stage: program synthesis, the gold-rationale teacher, extraction, verification.

`extract_program` and `gold_program` are the two functions other stages use;
importing the package loads only them (standard library only). The other
submodules are imported by their callers.
"""

from pad_jax.teacher.extraction import extract_program
from pad_jax.teacher.gold import gold_program

__all__ = ["extract_program", "gold_program"]
