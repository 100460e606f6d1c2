"""pad_jax.t5x_hooks.task_lookup: tasks by name with a readable error."""

import pytest

import tasks  # pylint: disable=unused-import  (registers the pad_* tasks)
from pad_jax.t5x_hooks import task_lookup


def test_unknown_task_error_names_registered_tasks():
  with pytest.raises(ValueError, match="no seqio task or mixture named "
                     "'pad_no_such_task'.*pad_eval_gsm8k"):
    task_lookup.checked_task_name("pad_no_such_task")


def test_known_task_passes_and_objects_give_their_name():
  assert task_lookup.checked_task_name("pad_eval_gsm8k") == "pad_eval_gsm8k"
  task = task_lookup.get_task("pad_eval_gsm8k")
  assert task_lookup.get_task(task) is task
  assert task_lookup.task_name(task) == "pad_eval_gsm8k"
  assert task_lookup.sub_tasks(task) == [task]
