"""Error injection: mutations of a verified program (PaD stage III data).

Each operator changes one statement of a `def solution()` program, the way a
small model gets a program wrong, and returns the faulty source (or None
when the program offers it no place to act):

* `wrong_operator`: one arithmetic operator replaced (`+` <-> `-`,
  `*` <-> `/`, `//` -> `/`, `**` -> `*`);
* `swapped_operands`: the operands of a `-`, `/`, `//` or `**` swapped;
* `wrong_operand`: a variable in a step replaced by another one defined
  before it;
* `dropped_step`: a step removed and the later uses of its result replaced
  by its first operand (the program skips a reasoning step);
* `undefined_name`: a use of a variable renamed to one that is never defined
  (`NameError` when run);
* `off_by_one`: a number in the program plus or minus one;
* `miscopied_number`: a given (`name = <integer>`) copied wrong from the
  question the way a small student miscopies digits: one digit replaced,
  doubled, dropped, or two neighbours swapped (61 -> 168, 2 -> 22, 140 -> 104).

Only the mutated statement is rewritten (with `ast.unparse`); every other
line keeps its text. Choices are drawn from the `random.Random` passed in,
so a seeded caller gets the same mutants every time. Whether a mutant is
wrong is decided by executing it (`pad_jax.refine.data`), not here.
"""

from __future__ import annotations

import ast
import copy
import random
from typing import Callable, Optional

_OPERATOR_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
                   ast.FloorDiv: ast.Div, ast.Pow: ast.Mult, ast.Mod: ast.Div}
_NON_COMMUTATIVE = (ast.Sub, ast.Div, ast.FloorDiv, ast.Pow, ast.Mod)

Mutator = Callable[[str, random.Random], Optional[str]]


def _function(tree: ast.Module) -> Optional[ast.FunctionDef]:
  for node in tree.body:
    if isinstance(node, ast.FunctionDef) and node.name == "solution":
      return node
  return None


def _statements(program: str) -> Optional[tuple[list[str], ast.FunctionDef]]:
  """The program's lines and its parsed `solution` (None if it has none)."""
  try:
    tree = ast.parse(program)
  except (SyntaxError, ValueError):
    return None
  function = _function(tree)
  if function is None:
    return None
  return program.split("\n"), function


def _replace_statement(lines: list[str], statement: ast.stmt,
                       new: Optional[ast.stmt]) -> Optional[str]:
  """`lines` with the one-line `statement` replaced by `new` (None: removed)."""
  if statement.end_lineno != statement.lineno:
    return None  # Keep it simple: only one-line statements are rewritten.
  index = statement.lineno - 1
  indent = lines[index][:len(lines[index]) - len(lines[index].lstrip())]
  out = list(lines)
  if new is None:
    del out[index]
  else:
    out[index] = indent + ast.unparse(new)
  return "\n".join(out)


def _assignments(function: ast.FunctionDef) -> list[ast.Assign]:
  """Top-level one-line `name = expression` steps of `solution`."""
  return [s for s in function.body if isinstance(s, ast.Assign) and len(s.targets) == 1
          and isinstance(s.targets[0], ast.Name) and s.lineno == s.end_lineno]


def _one_line(function: ast.FunctionDef) -> list[ast.stmt]:
  return [s for s in function.body if s.lineno == s.end_lineno and
          isinstance(s, (ast.Assign, ast.AugAssign, ast.Return))]


def _pick_node(statements: list[ast.stmt], rng: random.Random,
               test: Callable[[ast.AST], bool]) -> Optional[tuple[ast.stmt, ast.stmt, ast.AST]]:
  """A random (statement, its deep copy, the matching node inside the copy)."""
  places = []
  for statement in statements:
    for i, node in enumerate(ast.walk(statement)):
      if test(node):
        places.append((statement, i))
  if not places:
    return None
  statement, index = rng.choice(places)
  clone = copy.deepcopy(statement)
  return statement, clone, list(ast.walk(clone))[index]


def wrong_operator(program: str, rng: random.Random) -> Optional[str]:
  parsed = _statements(program)
  if parsed is None:
    return None
  lines, function = parsed
  picked = _pick_node(_one_line(function), rng,
                      lambda n: isinstance(n, ast.BinOp) and type(n.op) in _OPERATOR_SWAPS)
  if picked is None:
    return None
  statement, clone, node = picked
  node.op = _OPERATOR_SWAPS[type(node.op)]()
  return _replace_statement(lines, statement, clone)


def swapped_operands(program: str, rng: random.Random) -> Optional[str]:
  parsed = _statements(program)
  if parsed is None:
    return None
  lines, function = parsed
  picked = _pick_node(_one_line(function), rng,
                      lambda n: isinstance(n, ast.BinOp) and isinstance(n.op, _NON_COMMUTATIVE)
                      and ast.dump(n.left) != ast.dump(n.right))
  if picked is None:
    return None
  statement, clone, node = picked
  node.left, node.right = node.right, node.left
  return _replace_statement(lines, statement, clone)


def wrong_operand(program: str, rng: random.Random) -> Optional[str]:
  parsed = _statements(program)
  if parsed is None:
    return None
  lines, function = parsed
  assignments = _assignments(function)
  defined_before: dict[int, list[str]] = {}
  names: list[str] = []
  for statement in _one_line(function):
    defined_before[id(statement)] = list(names)
    if statement in assignments:
      names.append(statement.targets[0].id)
  places = []
  for statement in _one_line(function):
    for i, node in enumerate(ast.walk(statement)):
      if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        others = [n for n in defined_before[id(statement)] if n != node.id]
        if node.id in defined_before[id(statement)] and others:
          places.append((statement, i, others))
  if not places:
    return None
  statement, index, others = rng.choice(places)
  clone = copy.deepcopy(statement)
  list(ast.walk(clone))[index].id = rng.choice(others)
  return _replace_statement(lines, statement, clone)


class _Substitute(ast.NodeTransformer):
  def __init__(self, name: str, replacement: ast.expr):
    self.name = name
    self.replacement = replacement

  def visit_Name(self, node: ast.Name) -> ast.expr:
    if node.id == self.name and isinstance(node.ctx, ast.Load):
      return copy.deepcopy(self.replacement)
    return node


def dropped_step(program: str, rng: random.Random) -> Optional[str]:
  """Removes a computed step; its later uses read the step's first operand."""
  parsed = _statements(program)
  if parsed is None:
    return None
  lines, function = parsed
  one_line = _one_line(function)
  candidates = []
  for position, statement in enumerate(one_line):
    if statement not in _assignments(function) or not isinstance(statement.value, ast.BinOp):
      continue
    operand = statement.value
    while isinstance(operand, ast.BinOp):
      operand = operand.left
    later = one_line[position + 1:]
    name = statement.targets[0].id
    if any(isinstance(n, ast.Name) and n.id == name for s in later for n in ast.walk(s)):
      candidates.append((statement, operand, later))
  if not candidates:
    return None
  statement, operand, later = rng.choice(candidates)
  name = statement.targets[0].id
  out = list(lines)
  for other in later:
    if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(other)):
      new = _Substitute(name, operand).visit(copy.deepcopy(other))
      rewritten = _replace_statement(out, other, new)
      if rewritten is None:
        return None
      out = rewritten.split("\n")
  return _replace_statement(out, statement, None)


def undefined_name(program: str, rng: random.Random) -> Optional[str]:
  parsed = _statements(program)
  if parsed is None:
    return None
  lines, function = parsed
  defined = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)}
  picked = _pick_node(_one_line(function)[1:] or _one_line(function), rng,
                      lambda n: isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                      and n.id in defined)
  if picked is None:
    return None
  statement, clone, node = picked
  variants = [f"total_{node.id}", f"{node.id}s", f"num_{node.id}", f"{node.id}_count"]
  node.id = next(v for v in rng.sample(variants, len(variants)) if v not in defined)
  return _replace_statement(lines, statement, clone)


def off_by_one(program: str, rng: random.Random) -> Optional[str]:
  parsed = _statements(program)
  if parsed is None:
    return None
  lines, function = parsed
  picked = _pick_node(_one_line(function), rng,
                      lambda n: isinstance(n, ast.Constant) and type(n.value) in (int, float))
  if picked is None:
    return None
  statement, clone, node = picked
  node.value = node.value + rng.choice((-1, 1))
  return _replace_statement(lines, statement, clone)


def _miscopy(digits: str, rng: random.Random) -> str:
  kind = rng.choice(("replace", "double", "drop", "swap") if len(digits) > 1
                    else ("replace", "double"))
  i = rng.randrange(len(digits))
  if kind == "replace":
    return digits[:i] + rng.choice([d for d in "0123456789" if d != digits[i]]) + digits[i + 1:]
  if kind == "double":
    return digits[:i + 1] + rng.choice("0123456789") + digits[i + 1:]
  if kind == "drop":
    return digits[:i] + digits[i + 1:]
  i = min(i, len(digits) - 2)
  return digits[:i] + digits[i + 1] + digits[i] + digits[i + 2:]


def miscopied_number(program: str, rng: random.Random) -> Optional[str]:
  parsed = _statements(program)
  if parsed is None:
    return None
  lines, function = parsed
  givens = [s for s in _assignments(function)
            if isinstance(s.value, ast.Constant) and type(s.value.value) is int
            and s.value.value > 0]
  if not givens:
    return None
  statement = rng.choice(givens)
  clone = copy.deepcopy(statement)
  digits = _miscopy(str(statement.value.value), rng).lstrip("0") or "0"
  clone.value.value = int(digits)
  return _replace_statement(lines, statement, clone)


MUTATORS: dict[str, Mutator] = {
    "wrong_operator": wrong_operator,
    "swapped_operands": swapped_operands,
    "wrong_operand": wrong_operand,
    "dropped_step": dropped_step,
    "undefined_name": undefined_name,
    "off_by_one": off_by_one,
    "miscopied_number": miscopied_number,
}
OPERATORS = tuple(MUTATORS)


def mutate(program: str, operator: str, rng: random.Random) -> Optional[str]:
  """One mutant of `program` by `operator` (None: not applicable, or unchanged).

  Raises:
    ValueError: an unknown operator.
  """
  if operator not in MUTATORS:
    raise ValueError(f"unknown mutation operator {operator!r}; known: {OPERATORS}")
  mutant = MUTATORS[operator](program, rng)
  return None if mutant is None or mutant == program else mutant
