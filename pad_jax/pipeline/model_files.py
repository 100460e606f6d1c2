"""Which model class a student's model gin files define, read without running gin.

`TrainConfig.decoder_only()` asks whether the last `MODEL = @X()` of the
model files (their includes followed, in gin's order) is t5x's
`DecoderOnlyModel`; `model_refs` parses the files with gin's own parser and
keeps configurable references as their names, so nothing is imported or
bound.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

from gin import config_parser

from pad_jax.errors import ConfigError


class _Refs(config_parser.ParserDelegate):
  """Parses gin values, keeping configurable references as their names."""

  def configurable_reference(self, scoped_name, evaluate):
    return ("@", scoped_name)

  def macro(self, name):
    return None


def model_refs(path: pathlib.Path, search_paths: Sequence[str], refs: list[str]) -> None:
  """Appends to `refs` the configurable `X` of each `MODEL = @X()` binding of a gin
  file and of the files it includes, in gin's order."""
  for statement in config_parser.ConfigParser(path.read_text(encoding="utf-8"), _Refs()):
    if isinstance(statement, config_parser.IncludeStatement):
      found = [pathlib.Path(b, statement.filename) for b in ["", *search_paths]]
      found = [p for p in found if p.is_file()]
      if not found:
        raise ConfigError(f"{path}: included gin file {statement.filename!r} not found in "
                          f"{list(search_paths)}")
      model_refs(found[0], search_paths, refs)
    elif (isinstance(statement, config_parser.BindingStatement) and statement.selector == "MODEL"
          and not statement.scope and isinstance(statement.value, tuple)):
      refs.append(statement.value[1])
