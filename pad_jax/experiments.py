r"""Experiment sweeps: `python -m pad_jax.experiments --name=NAME`.

  python -m pad_jax.experiments --name=data_efficiency_tiny \
      [--gin.RUN_DIR="'outputs/experiments/data_efficiency_tiny'"] [--gin.X=Y ...] [--rerun=train]

Runs the pipeline once per point of `gin_configs/experiments/<NAME>.gin`'s
`SweepConfig` (see `pad_jax.pipeline.experiments`), then writes
`RUN_DIR/results.json`, `results.md` and a plot. Every point's config is
checked before anything runs: a bad config is one line, exit status 2.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Sequence

from absl import flags
from absl import logging
import gin

from pad_jax import cli
from pad_jax.errors import ConfigError
from pad_jax.pipeline import __main__ as pipeline_cli  # pylint: disable=unused-import  # defines --gin_file, --gin_bindings, --gin_search_paths, --rerun: a sweep takes the pipeline's flags
from pad_jax.pipeline import child
from pad_jax.pipeline import experiments
from pad_jax.pipeline import run_dir as run_dir_lib
from pad_jax.pipeline import runner
from pad_jax.pipeline.stage import StageError

_NAME = flags.DEFINE_string("name", None, "Experiment: gin_configs/experiments/<name>.gin.")


def main(argv: Sequence[str]) -> int:
  logging.set_verbosity(logging.WARNING)
  cli.no_arguments(argv)
  cli.require(name=_NAME.value)
  search_paths = list(flags.FLAGS.gin_search_paths)

  def configure(extra: Sequence[str]) -> None:
    gin.clear_config()
    try:
      runner.parse_gin(files, list(flags.FLAGS.gin_bindings) + list(extra), search_paths)
    except (ValueError, OSError, SyntaxError, TypeError) as e:  # gin's parse errors
      raise ConfigError(f"bad config: {cli.first_line(e)}") from None

  files = [str(experiments.experiment_gin_file(_NAME.value))] + list(flags.FLAGS.gin_file)
  configure([])
  try:
    rows = experiments.run_sweep(experiments.SweepConfig(), _NAME.value, configure,
                                 rerun=list(flags.FLAGS.rerun))
  except (StageError, child.ChildError, run_dir_lib.RunDirError) as e:
    print(f"pad_jax.experiments: {e}", file=sys.stderr)
    return 1
  print(json.dumps([{k: v for k, v in r.items() if k != "run_dir"} for r in rows], indent=1))
  out_dir = experiments.SweepConfig().out_dir
  print(f"\n{pathlib.Path(out_dir, 'results.md').read_text()}\n(written to {out_dir}/)",
        file=sys.stderr)
  return 0


if __name__ == "__main__":
  cli.run(main, prefix="pad_jax.experiments", argv=runner.rewrite_gin_args(sys.argv))
