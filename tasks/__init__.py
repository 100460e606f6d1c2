"""seqio task registrations for pad-jax (importing this registers every task).

* `tasks.eval_tasks`: `pad_eval_<benchmark>` for the eight benchmarks.
* `tasks.program_tasks`: `register_program_task(...)` for program datasets.
* `tasks.demo_tasks`: `pad_demo_synthetic`, the synthetic demo task.
* `tasks.refine_tasks`: `refine_mixture(...)` / `register_refine_task(...)`
  for self-refinement data (PaD stage III).
* `tasks.verifier_tasks`: `verifier_task(...)` / `register_verifier_task(...)`
  for the step verifier's data (PaD stage IV).
"""

from tasks import eval_tasks
from tasks import program_tasks
from tasks import demo_tasks
from tasks import refine_tasks
from tasks import verifier_tasks
