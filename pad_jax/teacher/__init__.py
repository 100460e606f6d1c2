"""Teacher stage: program synthesis, the gold-rationale teacher, verification.

`gold_program` is the function other stages use; importing the package loads
only it (standard library only). The other submodules are imported by their
callers. Extraction (a program out of chatty text) is
`pad_jax.execution.extraction`, shared with scoring.
"""

from pad_jax.teacher.gold import gold_program

__all__ = ["gold_program"]
