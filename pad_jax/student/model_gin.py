"""The t5x model a gin config defines (model files or a run's saved config).

`load_model_from_gin` builds the `MODEL` of t5x-style gin files: a project
model file (`models/codet5_small.gin`), the `model.gin` that
`python -m pad_jax.convert_hf` writes, or the `config.gin` that `t5x.train`
writes into its MODEL_DIR (the run's whole operative config). Used by
`pad_jax.convert_hf`, `pad_jax.infer` and `tools/learnability.py`.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Optional, Sequence

import gin
from gin import config_parser
from t5x import gin_utils

GIN_CONFIGS_DIR = str(pathlib.Path(__file__).resolve().parents[2] / "gin_configs")


class _IgnoreValues(config_parser.ParserDelegate):
  """Parses gin values without resolving references (for scanning a file)."""

  def configurable_reference(self, scoped_name, evaluate):
    return None

  def macro(self, name):
    return None


def script_selectors(gin_file: str) -> list[str]:
  """Selectors a saved t5x config binds on the program that wrote it.

  The `config.gin` that `t5x.train` writes into MODEL_DIR imports the program
  (`import __main__ as train_script`) and binds `train_script.train.*`. Those
  bindings configure that program, not the model; another program that reads
  the file skips them (gin's `skip_unknown`).

  Args:
    gin_file: a gin file path; a name only found on the gin search path (a
      project model file such as `models/tiny.gin`) binds none.

  Returns:
    Selectors such as `train_script.train`.
  """
  if not os.path.isfile(gin_file):
    return []
  text = pathlib.Path(gin_file).read_text(encoding="utf-8")
  aliases, selectors = set(), set()
  for statement in config_parser.ConfigParser(text, _IgnoreValues()):
    if isinstance(statement, config_parser.ImportStatement):
      if statement.module == "__main__":
        aliases.add(statement.bound_name())
    elif isinstance(statement, (config_parser.BindingStatement,
                                config_parser.BlockDeclaration)):
      if statement.selector.split(".")[0] in aliases:
        selectors.add(statement.selector)
  return sorted(selectors)


def load_model_from_gin(gin_files: Sequence[str],
                        bindings: Sequence[str] = (),
                        search_paths: Optional[Sequence[str]] = None,
                        with_optimizer: bool = True) -> Any:
  """Parses t5x-style gin model file(s) and returns the configured `MODEL`.

  A file may also be the `config.gin` that `t5x.train` writes into its
  MODEL_DIR (the run's whole operative config); its bindings of the training
  program are skipped (`script_selectors`).

  Args:
    gin_files: gin files, as `--gin_file` takes them.
    bindings: extra gin bindings (`KEY=VALUE`).
    search_paths: gin search paths; default the current directory and the
      project's `gin_configs/` (so `models/codet5_small.gin` resolves).
    with_optimizer: False: the model's `optimizer_def` is None. Decoding needs
      no optimizer, and building a run's optimizer may evaluate its schedule
      (`TRAIN_STEPS = @train_hooks.steps_for_epochs()` counts the data).

  Returns:
    The `%MODEL` object (e.g. a `t5x.models.EncoderDecoderModel`).

  Raises:
    ValueError: a gin file cannot be parsed or has no `MODEL`.
  """
  skip = [s for f in gin_files for s in script_selectors(f)]
  gin.clear_config(clear_constants=True)
  try:
    gin_utils.parse_gin_flags(
        gin_search_paths=list(search_paths or [".", GIN_CONFIGS_DIR]),
        gin_files=list(gin_files), gin_bindings=list(bindings),
        skip_unknown=skip, finalize_config=False)
  except (ImportError, AttributeError, NameError) as e:
    # What gin raises for a module or name it cannot resolve.
    raise ValueError(f"{', '.join(gin_files)}: {e}") from e
  model = gin.query_parameter("%MODEL")
  if not with_optimizer:
    gin.bind_parameter(f"{model.scoped_selector}.optimizer_def", None)
  return model.scoped_configurable_fn()
