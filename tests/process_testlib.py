"""Process-tree inspection shared by the executor tests."""

import os


def process_tree(pid: int) -> set[int]:
  """`pid` and all its descendants (from /proc/*/task/*/children)."""
  seen, todo = set(), [pid]
  while todo:
    p = todo.pop()
    if p in seen:
      continue
    seen.add(p)
    try:
      for task in os.listdir(f"/proc/{p}/task"):
        with open(f"/proc/{p}/task/{task}/children") as f:
          todo.extend(int(c) for c in f.read().split())
    except OSError:
      pass
  return seen
