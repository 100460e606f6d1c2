"""The package layout stays what docs/architecture.md draws.

* no module of `pad_jax/` or `tasks/` over 600 lines;
* no package imports from a package that imports it back (imports inside
  functions count too: they are how a cycle hides);
* the top level of `pad_jax/` holds only commands, gin-facing shims and
  small leaf modules (the list below; a new one is a decision, not an
  accident);
* a `config.gin` that `t5x.train` saved before the student and decoding
  moved into their packages still builds the same model classes.
"""

from __future__ import annotations

import ast
import collections
import inspect
import pathlib
import sys

import gin
import pytest
from t5x import infer as t5x_infer

from pad_jax.decoding import beam_search
from pad_jax.student import models
from pad_jax.student import network
from pad_jax.student import vocab
from pad_jax.student import model_gin

ROOT = pathlib.Path(__file__).resolve().parents[1]
TESTDATA = pathlib.Path(__file__).resolve().parent / "testdata"
MAX_LINES = 600

# The top level of pad_jax/, by role.
COMMANDS = {"convert_hf", "experiments", "export_hf", "infer", "preflight",
            "score", "synthesize", "verify"}
GIN_SHIMS = {"beam_search", "init_checkpoint", "models", "network",
             "train_hooks", "vocab"}
LEAF_MODULES = {"__init__", "answers", "arithmetic", "atomic", "checkpoints",
                "cli", "errors", "jsonl", "metrics", "tf_devices"}


def _modules():
  for top in ("pad_jax", "tasks"):
    for path in sorted((ROOT / top).rglob("*.py")):
      yield path


def _dotted(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def _unit(dotted: str) -> str:
  """The package a module belongs to for the layering rule.

  `pad_jax.<pkg>.*` is `pad_jax.<pkg>`; a top-level module is its own unit;
  `tasks.*` is `tasks`.
  """
  parts = dotted.split(".")
  if parts[0] == "tasks":
    return "tasks"
  return ".".join(parts[:2])


def _imports(path: pathlib.Path) -> set[str]:
  """Every pad_jax / tasks module `path` imports, at any depth of its code."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      out.add(node.module)
      out.update(f"{node.module}.{a.name}" for a in node.names)
  known = {_dotted(p) for p in _modules()}
  return {m for m in out if m in known}


def test_no_module_over_the_size_limit():
  long = {str(p.relative_to(ROOT)): n for p in _modules()
          if (n := len(p.read_text().splitlines())) > MAX_LINES}
  assert not long, f"modules over {MAX_LINES} lines: {long}"


def _package_edges() -> dict[str, dict[str, str]]:
  """unit -> {unit it imports: one import that shows it}."""
  edges = collections.defaultdict(dict)
  for path in _modules():
    here = _unit(_dotted(path))
    for target in sorted(_imports(path)):
      there = _unit(target)
      if there != here:
        edges[here].setdefault(there, f"{path.relative_to(ROOT)} -> {target}")
  return edges


def test_no_two_way_package_dependencies():
  edges = _package_edges()
  two_way = [f"{a} <-> {b}: {via}; {edges[b][a]}"
             for a, outs in edges.items() for b, via in outs.items()
             if a < b and a in edges.get(b, {})]
  assert not two_way, "\n".join(sorted(two_way))


def test_no_cycle_between_packages():
  """Nor through a third: the packages form a layered graph."""
  edges = _package_edges()
  cycles = []

  def visit(unit, path):
    for nxt in sorted(edges.get(unit, {})):
      if nxt == path[0]:
        cycles.append(" -> ".join(path + [nxt]))
      elif nxt not in path and nxt > path[0]:
        visit(nxt, path + [nxt])

  for start in sorted(edges):
    visit(start, [start])
  assert not cycles, "\n".join(cycles[:10])


def test_top_level_holds_commands_shims_and_leaf_modules():
  names = {p.stem for p in (ROOT / "pad_jax").glob("*.py")}
  unexpected = names - COMMANDS - GIN_SHIMS - LEAF_MODULES
  assert not unexpected, (f"new top-level modules {sorted(unexpected)}: put "
                          "library code in its phase's package")
  for shim in GIN_SHIMS:
    lines = (ROOT / "pad_jax" / f"{shim}.py").read_text().splitlines()
    assert len(lines) < 80, f"pad_jax/{shim}.py is a shim; keep it thin"


def test_a_config_gin_saved_before_the_move_still_builds_the_model():
  saved = str(TESTDATA / "old_layout_config.gin")
  text = pathlib.Path(saved).read_text()
  # Written by t5x.train at the previous layout: the old module names.
  for line in ("from pad_jax import network", "import pad_jax.vocab",
               "from pad_jax import models as pad_models"):
    assert line in text
  try:
    model = model_gin.load_model_from_gin([saved], with_optimizer=False)
  finally:
    gin.clear_config(clear_constants=True)
  assert type(model) is models.EncoderDecoderModel
  assert type(model.module) is network.Transformer
  assert model.module.config.emb_dim == 512
  assert isinstance(model.input_vocabulary, vocab.CodeT5Vocabulary)


def test_the_saved_config_takes_the_new_infer_run_file(monkeypatch):
  """Old config.gin + today's runs/pad_infer.gin: one model class, bound once."""
  saved = str(TESTDATA / "old_layout_config.gin")
  # runs/pad_infer.gin binds `import __main__ as infer_script`, as t5x.infer runs it.
  monkeypatch.setattr(sys.modules["__main__"], "infer", t5x_infer.infer, raising=False)
  try:
    model = model_gin.load_model_from_gin(
        [saved, "runs/pad_infer.gin"], with_optimizer=False,
        bindings=["DECODE_FN=@beam_search.beam_search",
                  "CHECKPOINT_PATH='/unused'", "INFER_OUTPUT_DIR='/unused'",
                  "MIXTURE_OR_TASK_NAME='pad_eval_svamp'"])
  finally:
    gin.clear_config(clear_constants=True)
  assert type(model) is models.EncoderDecoderModel
  decode_fn = inspect.unwrap(model._decode_fn)  # pylint: disable=protected-access
  assert decode_fn is inspect.unwrap(beam_search.beam_search)


if __name__ == "__main__":
  pytest.main([__file__])
