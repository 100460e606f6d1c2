"""Get a runnable `def solution()` program out of a messy LLM completion.

Teachers (and students) wrap programs in markdown fences, talk before and
after them, add `print(solution())`, tests, asserts, `if __name__ ==
"__main__"` blocks, several code blocks, REPL prompts, tabs, CRLF and odd
indentation; sometimes they give no function at all but a script or a bare
arithmetic expression. `extract_program` returns a clean program that defines
`solution()` (plus the imports, helper functions and constants it needs), or
None when there is no program to be found.

The result is canonical and idempotent: `extract_program(extract_program(t))
== extract_program(t)`. Only the standard library is used (leaf module).
Callers: verification of teacher completions (`verification.from_completion`)
and scoring of predictions that are not already a program
(`scoring.program_to_run`).
"""

from __future__ import annotations

import ast
import re
import textwrap
import warnings
from typing import Optional

SOLUTION_NAME = "solution"

# ```python / ``` py / ~~~ / ```Python3 {linenos} ... ; the closing fence may be
# missing when a completion was truncated.
_FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*$")
_CODE_LANGS = ("", "python", "py", "python3", "py3", "ipython", "python2", "pycon", "code")
_SAFE_CALLS = frozenset({"abs", "round", "min", "max", "sum", "int", "float", "pow", "divmod"})
_RESULT_NAMES = ("result", "answer", "ans", "total", "res", "output")


def extract_program(text: Optional[str]) -> Optional[str]:
  """Returns the `def solution()` program in `text`, or None.

  Args:
    text: a raw completion (markdown, prose and code mixed), or a program.

  Returns:
    Program source without a trailing newline, defining `solution()` and
    whatever module-level imports/functions/classes/constants it uses; None if
    `text` holds no usable program.
  """
  if not text or not isinstance(text, str):
    return None
  text = _normalize_text(text)
  fenced = _code_blocks(text)
  for attempt in range(2):
    if attempt == 0:
      blocks = fenced
    elif fenced != [text]:  # Code outside the fences, e.g. a fenced test only.
      blocks = ["\n".join(l for l in text.split("\n") if not _FENCE_RE.match(l))]
    else:
      break
    modules = [m for m in (_parse_block(b) for b in blocks) if m is not None]
    program = _from_solution_def(modules)
    if program is None:
      program = _from_script(modules)
    if program is None:
      program = _from_bare_expression(blocks)
    if program is not None:
      return program
  return None


# ---------------------------------------------------------------------------
# Text -> candidate code blocks.


def _normalize_text(text: str) -> str:
  text = text.replace("\r\n", "\n").replace("\r", "\n")
  text = text.replace("\u00a0", " ").replace("\u200b", "").replace("\ufeff", "")
  return text


def _code_blocks(text: str) -> list[str]:
  """Fenced code blocks in order (non-code languages dropped), else the text."""
  lines = text.split("\n")
  blocks, current, lang, fence = [], None, "", None
  for line in lines:
    match = _FENCE_RE.match(line)
    if current is None:
      if match:
        current, fence, lang = [], match.group(1), match.group(2).lower()
      continue
    if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) and not match.group(2):
      if lang in _CODE_LANGS:
        blocks.append("\n".join(current))
      current = None
      continue
    current.append(line)
  if current is not None and lang in _CODE_LANGS:  # Truncated: no closing fence.
    blocks.append("\n".join(current))
  if not blocks:
    blocks = [text]
  return blocks


def _clean_block(block: str) -> str:
  """Strips REPL prompts, expands tabs and removes common indentation."""
  lines = block.split("\n")
  if ">>>" in block and any(l.lstrip().startswith(">>> ") for l in lines):
    kept = []
    for line in lines:
      stripped = line.lstrip()
      if stripped.startswith(">>> ") or stripped == ">>>":
        kept.append(stripped[4:])
      elif stripped.startswith("... ") or stripped == "...":
        kept.append(stripped[4:])
      # Other lines in a REPL transcript are outputs: dropped.
    lines = kept
  if "\t" in block:
    lines = [l.expandtabs(4) for l in lines]
  lines = [l.rstrip() for l in lines]
  return textwrap.dedent("\n".join(lines)).strip("\n")


# ---------------------------------------------------------------------------
# Block -> list of (top-level AST node, its source lines).


class _Module:
  """The parseable top-level statements of one code block."""

  def __init__(self, nodes: list[ast.stmt], sources: list[str]):
    self.nodes = nodes
    self.sources = sources

  def items(self):
    return zip(self.nodes, self.sources)


def _parse_block(block: str) -> Optional[_Module]:
  block = _clean_block(block)
  if not block.strip():
    return None
  tree = _try_parse(block)
  if tree is None:
    repaired = _repair_indentation(block)
    tree = _try_parse(repaired)
    if tree is not None:
      block = repaired
  if tree is not None:
    return _module_from_tree(tree, block)
  # Not valid Python as a whole: keep the top-level chunks that parse.
  nodes, sources = [], []
  for chunk in _top_level_chunks(block):
    parsed = _longest_parsing_prefix(chunk)
    if parsed is not None:
      module = _module_from_tree(*parsed)
    elif "\n" in chunk:  # A prose line introducing an indented code block.
      module = _parse_block(chunk.split("\n", 1)[1])
    else:
      module = None
    if module is None:
      continue
    nodes.extend(module.nodes)
    sources.extend(module.sources)
  if not nodes:
    return None
  return _Module(nodes, sources)


def _try_parse(source: str) -> Optional[ast.Module]:
  with warnings.catch_warnings():  # `1st` etc. in prose warn before failing.
    warnings.simplefilter("ignore", SyntaxWarning)
    try:
      return ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
      return None


def _module_from_tree(tree: ast.Module, source: str) -> _Module:
  lines = source.split("\n")
  nodes, sources = [], []
  for node in tree.body:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    end = node.end_lineno or node.lineno
    nodes.append(node)
    sources.append("\n".join(lines[start - 1:end]).rstrip())
  return _Module(nodes, sources)


_DEF_LINE_RE = re.compile(r"^(\s*)def \w+\s*\(.*\)[^:]*:\s*(#.*)?$")
_TOP_LEVEL_RE = re.compile(r"^(def |class |print\(|if __name__|assert |@|import |from )")


def _repair_indentation(block: str) -> str:
  """Indents a function body written flush with its `def` line."""
  lines, out, i = block.split("\n"), [], 0
  while i < len(lines):
    out.append(lines[i])
    match = _DEF_LINE_RE.match(lines[i])
    i += 1
    if not match:
      continue
    indent = len(match.group(1))
    following = [l for l in lines[i:] if l.strip()]
    if not following or len(following[0]) - len(following[0].lstrip()) > indent:
      continue
    while i < len(lines):
      line, stripped = lines[i], lines[i].strip()
      if stripped and len(line) - len(line.lstrip()) <= indent and _TOP_LEVEL_RE.match(stripped):
        break
      out.append(" " * 4 + line if stripped else line)
      i += 1
      if stripped.startswith("return") and len(line) - len(line.lstrip()) <= indent:
        break
  return "\n".join(out)


def _top_level_chunks(block: str) -> list[str]:
  """Splits at lines that start in column 0 (a statement or a prose line)."""
  chunks, current = [], []
  for line in block.split("\n"):
    starts_new = line and not line[0].isspace()
    continues = line.startswith((")", "]", "}", "else", "elif", "except", "finally"))
    if starts_new and not continues and current:
      chunks.append("\n".join(current))
      current = []
    current.append(line)
  if current:
    chunks.append("\n".join(current))
  return chunks


def _longest_parsing_prefix(chunk: str) -> Optional[tuple[ast.Module, str]]:
  lines = chunk.rstrip().split("\n")
  for end in range(len(lines), 0, -1):
    source = "\n".join(lines[:end])
    tree = _try_parse(source)
    if tree is not None and tree.body:
      if not _is_prose_like(tree, source):
        return tree, source
      return None
  return None


def _is_prose_like(tree: ast.Module, source: str) -> bool:
  """A lone Name / annotation line such as `Answer` or `Note: x` is prose."""
  if len(tree.body) != 1:
    return False
  node = tree.body[0]
  if isinstance(node, ast.AnnAssign) and node.value is None:
    return True
  if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Name, ast.Attribute)):
    return True
  return False


# ---------------------------------------------------------------------------
# Case 1: some block defines solution().


def _is_solution_def(node: ast.stmt) -> bool:
  return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == SOLUTION_NAME


def _from_solution_def(modules: list[_Module]) -> Optional[str]:
  chosen = None
  for module in modules:  # The last block defining solution() wins (a fix).
    if any(_is_solution_def(n) for n in module.nodes):
      chosen = module
  if chosen is None:
    return None
  # Definitions available: the chosen block first, then the other blocks.
  providers: dict[str, tuple[int, ast.stmt, str]] = {}
  imports: list[tuple[ast.stmt, str]] = []
  solution = None
  sequence = 0
  for module in [m for m in modules if m is not chosen] + [chosen]:
    for node, source in module.items():
      sequence += 1
      if _is_solution_def(node):
        if module is chosen:
          solution = (node, source)
        continue
      if _is_noise(node) or _calls_solution(node):
        continue
      for name in _defined_names(node):
        providers[name] = (sequence, node, source)
      if isinstance(node, (ast.Import, ast.ImportFrom)):
        imports.append((node, source))
  node, source = solution
  source = _ensure_return(node, source)
  if not providers and not imports:  # The common case: solution() alone.
    return source.strip("\n")
  needed = _needed_definitions(node, providers)
  used = _free_names([node] + [n for n, _ in needed])
  parts = []
  for imp, imp_source in imports:
    names = _defined_names(imp)
    if (names & used or "*" in names) and imp_source not in parts:
      parts.append(imp_source)
  parts.extend(s for _, s in needed)
  parts.append(source)
  return "\n\n".join(p.strip("\n") for p in parts)


def _defined_names(node: ast.stmt) -> set[str]:
  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
    return {node.name}
  if isinstance(node, ast.Import):
    return {(a.asname or a.name).split(".")[0] for a in node.names}
  if isinstance(node, ast.ImportFrom):
    return {a.asname or a.name for a in node.names}
  if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = set()
    for target in targets:
      names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names
  return set()


class _NameInfo:
  """Names a node loads / stores / declares global, and whether it returns."""
  __slots__ = ("loaded", "stored", "declared", "returns")

  def __init__(self, node: ast.AST):
    self.loaded, self.stored, self.declared, self.returns = set(), set(), set(), False
    for sub in ast.walk(node):  # One walk: extraction runs on every completion.
      kind = type(sub)
      if kind is ast.Name:
        (self.loaded if type(sub.ctx) is ast.Load else self.stored).add(sub.id)
      elif kind is ast.arg:
        self.stored.add(sub.arg)
      elif kind is ast.Return:
        self.returns = True
      elif kind is ast.Global or kind is ast.Nonlocal:
        self.declared.update(sub.names)


_INFO_CACHE: dict[int, tuple[ast.AST, _NameInfo]] = {}


def _info(node: ast.AST) -> _NameInfo:
  cached = _INFO_CACHE.get(id(node))
  if cached is not None and cached[0] is node:
    return cached[1]
  if len(_INFO_CACHE) > 4096:
    _INFO_CACHE.clear()
  info = _NameInfo(node)
  _INFO_CACHE[id(node)] = (node, info)
  return info


def _free_names(nodes: list[ast.AST]) -> set[str]:
  """Names read by `nodes` that a function does not bind itself."""
  names = set()
  for node in nodes:
    info = _info(node)
    loaded = set(info.loaded)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
      loaded -= info.stored - info.declared
    names |= loaded
  return names


def _needed_definitions(solution: ast.stmt, providers: dict) -> list[tuple[ast.stmt, str]]:
  """Non-import module-level definitions reachable from solution(), in order."""
  needed: list[tuple[int, ast.stmt, str]] = []
  frontier = [solution]
  seen_ids = set()
  while frontier:
    used = _free_names(frontier)
    frontier = []
    for name in sorted(used):
      if name not in providers:
        continue
      sequence, node, source = providers[name]
      if isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in seen_ids:
        continue
      seen_ids.add(id(node))
      needed.append((sequence, node, source))
      frontier.append(node)
  needed.sort(key=lambda item: item[0])
  return [(node, source) for _, node, source in needed]


def _calls_solution(node: ast.AST) -> bool:
  info = _info(node)
  return SOLUTION_NAME in info.loaded or SOLUTION_NAME in info.stored


def _ensure_return(node: ast.stmt, source: str) -> str:
  """Adds `return <name>` when solution() computes a result but never returns."""
  if _RETURN_LINE_RE.search(source) or _info(node).returns:
    return source
  body = node.body
  last = body[-1]
  body_indent = " " * body[0].col_offset
  lines = source.split("\n")
  offset = min([node.lineno] + [d.lineno for d in node.decorator_list])
  if isinstance(last, ast.Expr) and _is_print_call(last.value) and len(last.value.args) == 1:
    arg = ast.unparse(last.value.args[0])
    start, end = last.lineno - offset, last.end_lineno - offset
    lines[start:end + 1] = [f"{body_indent}return {arg}"]
    return "\n".join(lines)
  assigned = [n for stmt in body for n in _defined_names(stmt)]
  for name in list(_RESULT_NAMES) + assigned[::-1]:
    if name in assigned:
      return source.rstrip() + f"\n{body_indent}return {name}"
  return source


_RETURN_LINE_RE = re.compile(r"^[ \t]+return\b", re.M)


def _is_print_call(node: ast.AST) -> bool:
  return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"


# ---------------------------------------------------------------------------
# Case 2: a script without solution() (PAL-style top-level code).


def _from_script(modules: list[_Module]) -> Optional[str]:
  for module in reversed(modules):
    statements = [(n, s) for n, s in module.items() if not _is_noise(n)]
    assigns = [n for n, _ in statements if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign))]
    if not assigns:
      continue
    imports = [s for n, s in statements if isinstance(n, (ast.Import, ast.ImportFrom))]
    defs = [s for n, s in statements if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    body = [(n, s) for n, s in statements
            if not isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))]
    if not body:
      continue
    returned = _script_result(body)
    if returned is None:
      continue
    body_lines = []
    for node, source in body:
      if isinstance(node, ast.Expr) and _is_print_call(node.value):
        continue
      body_lines.extend(source.split("\n"))
    body_lines.append(f"return {returned}")
    function = "def solution():\n" + textwrap.indent("\n".join(body_lines), "    ")
    program = "\n\n".join(imports + defs + [function])
    if _try_parse(program) is not None:
      return program
  return None


def _script_result(body: list[tuple[ast.stmt, str]]) -> Optional[str]:
  last_node = body[-1][0]
  if isinstance(last_node, ast.Expr) and _is_print_call(last_node.value) and len(last_node.value.args) == 1:
    return ast.unparse(last_node.value.args[0])
  assigned = [name for node, _ in body for name in _defined_names(node)]
  for name in _RESULT_NAMES:
    if name in assigned:
      return name
  if isinstance(last_node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
    names = _defined_names(last_node)
    if len(names) == 1:
      return names.pop()
  return None


def _is_noise(node: ast.stmt) -> bool:
  """Tests, asserts, `if __name__ == ...` blocks and bare name lines."""
  if isinstance(node, ast.Assert):
    return True
  if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
    return True
  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
    return True
  if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Name, ast.Constant)):
    return True
  return False


# ---------------------------------------------------------------------------
# Case 3: a bare arithmetic expression (`48 / 2 + 48`, `The answer is 72.`).

_ANSWER_RE = re.compile(
    r"(?:answer|result)\s*(?:is|=|:)\s*\$?\s*([-+(]?[\d.,]*\d[\d\s.+\-*/()%]*)", re.IGNORECASE)


def _from_bare_expression(blocks: list[str]) -> Optional[str]:
  for block in reversed(blocks):
    candidate = _clean_block(block).strip()
    expression = _safe_expression(candidate)
    if expression is None and "\n" not in candidate:  # `The answer is 72.`
      match = _ANSWER_RE.search(candidate)
      if match:
        expression = _safe_expression(match.group(1))
    if expression is not None:
      return f"def solution():\n    return {expression}"
  return None


def _safe_expression(candidate: str) -> Optional[str]:
  """`candidate` as canonical source if it is a constant-only expression."""
  candidate = candidate.strip().rstrip(".").strip()
  if not candidate or "\n" in candidate:
    return None
  if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", candidate):
    candidate = candidate.replace(",", "")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", SyntaxWarning)
    try:
      tree = ast.parse(candidate, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
      return None
  has_number = False
  for node in ast.walk(tree):
    if isinstance(node, ast.Constant):
      if not isinstance(node.value, (int, float)) or isinstance(node.value, bool):
        return None
      has_number = True
    elif isinstance(node, ast.Call):
      if not (isinstance(node.func, ast.Name) and node.func.id in _SAFE_CALLS) or node.keywords:
        return None
    elif isinstance(node, ast.Name):
      if node.id not in _SAFE_CALLS:
        return None
    elif not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop,
                               ast.Load)):
      return None
  if not has_number:
    return None
  return ast.unparse(tree)
