"""Sandboxed, batched execution of model-written programs.

Public API: `Executor`, `ExecResult`, `STATUSES`, `MODES`,
`DEFAULT_ALLOWED_MODULES`. See `executor.py` (the pool) and `worker.py`
(the sandbox) and docs/security.md (what is protected). Built on it:
`extraction.py` (a `def solution()` program out of chatty text),
`verification.py` (programs against gold answers: verdicts, duplicates,
counts) and `scoring.py` (predictions: majority vote, summaries).
"""

from pad_jax.execution.executor import (DEFAULT_ALLOWED_MODULES,
                                        ISOLATION_LEVELS, MODES, STATUSES,
                                        ExecResult, Executor, ExecutorError,
                                        isolation_level)

__all__ = ["DEFAULT_ALLOWED_MODULES", "ISOLATION_LEVELS", "MODES", "STATUSES",
           "ExecResult", "Executor", "ExecutorError", "isolation_level"]
