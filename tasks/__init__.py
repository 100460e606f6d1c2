"""seqio task registrations for pad-jax (importing this registers every task).

* `tasks.eval_tasks`: `pad_eval_<benchmark>` for the eight benchmarks.
* `tasks.program_tasks`: `register_program_task(...)` for program datasets.
"""

from tasks import eval_tasks
from tasks import program_tasks
