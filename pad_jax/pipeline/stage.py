"""What every pipeline stage gets: its directory, the run, progress bars.

A stage is a function `run(ctx, configs, upstream) -> summary` in a module
named after it (`synthesize_stage`, `verify_stage`, `train_stage`,
`decode_stage`, `score_stage`, `report`): it writes only into
`ctx.stage_dir` and reads the outputs of earlier stages through
`ctx.upstream(stage, ...)`.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable

from pad_jax.pipeline import run_dir as run_dir_lib


class StageError(RuntimeError):
  """A stage cannot go on (missing input, a failed child); the message says why."""


@dataclasses.dataclass
class StageContext:
  """What a stage gets: its directory, the run, a progress-bar factory."""

  run: run_dir_lib.RunDir
  stage_dir: pathlib.Path
  bar: Callable[..., Any]  # bar(total=None, unit="it", desc_suffix=None) -> tqdm-like

  def path(self, *parts: str) -> pathlib.Path:
    return self.stage_dir.joinpath(*parts)

  def upstream(self, stage: str, *parts: str) -> pathlib.Path:
    return self.run.stage_dir(stage).joinpath(*parts)
