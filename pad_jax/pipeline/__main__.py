r"""The end-to-end PaD pipeline: teacher -> verify -> t5x train -> decode -> score -> report.

Usage (from the repository root):

  python -m pad_jax.pipeline --gin_file=gin_configs/pipelines/demo.gin \
      [--gin.RUN_DIR="'outputs/my_run'"] [--gin.TrainConfig.train_steps=200] \
      [--rerun=train]

Every stage's config is checked before the first stage runs: a bad gin file
or setting is one line naming it, exit status 2. A killed run resumes where
it stopped when started again with the same command (see `runner.py`).
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import flags
from absl import logging

from pad_jax import cli
from pad_jax import tf_devices
from pad_jax.errors import ConfigError
from pad_jax.pipeline import child
from pad_jax.pipeline import run_dir as run_dir_lib
from pad_jax.pipeline import runner
from pad_jax.pipeline.configs import GIN_CONFIGS, REPO_ROOT, STAGES, PipelineConfig
from pad_jax.pipeline.stage import StageError

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin files (e.g. gin_configs/pipelines/demo.gin).")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [], "Gin bindings; `--gin.KEY=VALUE` is the same as `--gin_bindings=KEY=VALUE`.")
_GIN_SEARCH_PATHS = flags.DEFINE_list(
    "gin_search_paths", [".", str(GIN_CONFIGS), str(REPO_ROOT)],
    "Where --gin_file paths and gin `include`s are looked up.")
_RERUN = flags.DEFINE_list(
    "rerun", [], f"Stages to run again even if complete (and every later one); any of {STAGES}.")


def main(argv: Sequence[str]) -> int:
  tf_devices.hide_accelerators_from_tf()  # stages in this process use TF on the host only
  logging.set_verbosity(logging.WARNING)  # progress bars, not INFO logs, in the terminal
  cli.no_arguments(argv)
  try:
    runner.parse_gin(_GIN_FILE.value, _GIN_BINDINGS.value, _GIN_SEARCH_PATHS.value)
    config = PipelineConfig()
    configs = runner.validated_configs(config, _RERUN.value)
  except (ValueError, OSError, SyntaxError, TypeError) as e:  # gin's errors and ConfigError
    raise ConfigError(f"bad config: {cli.first_line(e)}") from None
  try:
    runner.run_pipeline(config, rerun=_RERUN.value, configs=configs)
  except (StageError, child.ChildError, run_dir_lib.RunDirError) as e:
    print(f"pad_jax.pipeline: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  cli.run(main, prefix="pad_jax.pipeline", argv=runner.rewrite_gin_args(sys.argv))
