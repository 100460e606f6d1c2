"""Registers the small program task the training tests train on.

Imported inside `python -m t5x.train` / `t5x.eval` subprocesses through
`tests/testdata/train_test_tasks.gin`; the JSONL path comes from
$PAD_TRAIN_TEST_JSONL (written by tests/train_testlib.py).
"""

import os

from pad_jax.data import synthetic
from tasks import eval_tasks
from tasks import program_tasks

TASK = "pad_train_test"
EVAL_TASK = "pad_eval_singleop_demo"

program_tasks.register_program_task(
    TASK, os.environ["PAD_TRAIN_TEST_JSONL"],
    vocabulary=synthetic.demo_vocabulary(), validation_fraction=0.1)
# A real benchmark eval task in the tiny model's vocabulary.
eval_tasks.register_eval_task(
    "singleop", EVAL_TASK, vocabulary=synthetic.demo_vocabulary())
