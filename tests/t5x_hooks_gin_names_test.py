"""The gin names of the hooks stay what run files and saved configs use.

`gin_configs/runs/*.gin` and every MODEL_DIR/config.gin written before the
hooks moved to `pad_jax.t5x_hooks` name them `train_hooks.<name>` and
`init_checkpoint.get_train_dataset`.
"""

import pathlib
import re

import gin
import pytest

from pad_jax import init_checkpoint
from pad_jax import train_hooks

RUNS = pathlib.Path(__file__).resolve().parents[1] / "gin_configs" / "runs"


@pytest.mark.parametrize("gin_file", sorted(p.name for p in RUNS.glob("*.gin")))
def test_every_name_in_the_run_files_exists(gin_file):
  text = (RUNS / gin_file).read_text()
  for module, names in ((train_hooks, re.findall(r"train_hooks\.(\w+)", text)),
                        (init_checkpoint,
                         re.findall(r"init_checkpoint\.(\w+)", text))):
    for name in names:
      assert hasattr(module, name), f"{gin_file}: {module.__name__}.{name}"


def test_saved_config_names_are_unchanged():
  gin.clear_config(clear_constants=True)
  try:
    gin.parse_config("""
from __gin__ import dynamic_registration
from pad_jax import init_checkpoint
from pad_jax import train_hooks
init_checkpoint.get_train_dataset.dataset_fn = @train_hooks.get_train_dataset
train_hooks.get_train_dataset.report_dir = '/tmp/run'
train_hooks.learning_rate_schedule.decay = 'constant'
train_hooks.EarlyStopping.patience = 3
""")
    config = gin.config_str()
  finally:
    gin.clear_config(clear_constants=True)
  for line in ("init_checkpoint.get_train_dataset.dataset_fn = "
               "@train_hooks.get_train_dataset",
               "train_hooks.get_train_dataset.report_dir = '/tmp/run'",
               "train_hooks.learning_rate_schedule.decay = 'constant'",
               "train_hooks.EarlyStopping.patience = 3"):
    assert line in config, config
