"""The README is a short front page and every relative link of the docs resolves.

Checks README.md and docs/*.md: each `](path)`, `](path#anchor)` and
`](#anchor)` outside code blocks points to a file that exists and, for a
markdown file, to a heading that exists (GitHub's anchor rule).
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path: pathlib.Path) -> set[str]:
  """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-'."""
  found, seen = set(), {}
  for line in _FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
    heading = re.match(r"^#{1,6} +(.+?) *#*$", line)
    if heading:
      anchor = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
      count = seen.get(anchor, 0)
      seen[anchor] = count + 1
      found.add(anchor if count == 0 else f"{anchor}-{count}")
  return found


def _links(path: pathlib.Path) -> list[str]:
  return _LINK.findall(_FENCE.sub("", path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
  broken = []
  for target in _links(page):
    if re.match(r"^[a-z]+:", target):  # https://, mailto:
      continue
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    if not dest.exists():
      broken.append(f"{target}: no such file")
    elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
      broken.append(f"{target}: no heading with that anchor")
  assert not broken, broken


def test_readme_is_a_short_front_page_opening_with_the_two_commands():
  text = (ROOT / "README.md").read_text(encoding="utf-8")
  assert len(text.splitlines()) < 250
  first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).splitlines()
  assert [line.split()[:2] for line in first_block] == [["make", "demo"], ["make", "test"]]


def test_readme_contents_link_only_to_sections_that_exist():
  readme = ROOT / "README.md"
  contents = readme.read_text(encoding="utf-8").split("## Contents", 1)[1].split("\n## ", 1)[0]
  targets = re.findall(r"\]\(#([^)]+)\)", contents)
  assert targets
  assert set(targets) <= _anchors(readme)
