"""Idempotent seqio task registration (used by every `register_*` in tasks/).

`register_once(name, owner, key, **task_kwargs)`:

* `name` not registered -> `seqio.TaskRegistry.add(name, **task_kwargs)`;
* registered by an earlier call of the same `owner` with an equal `key` ->
  a no-op that returns the existing task (so gin files and the pipeline may
  call a registration function several times, e.g. once per split);
* registered by the same `owner` with a different `key` -> the old task is
  removed and the new one registered (a mixture built before still holds the
  old task object);
* registered by another owner or by other code -> ValueError, so e.g. a
  program task can never silently replace an eval task.
"""

from __future__ import annotations

from typing import Any, Hashable

import seqio

# name -> (owner, key, task) of the registrations made here.
_REGISTERED: dict[str, tuple[str, Hashable, seqio.Task]] = {}


def register_once(name: str, owner: str, key: Hashable,
                  **task_kwargs: Any) -> seqio.Task:
  """Registers the seqio task `name` unless an equal registration exists.

  Args:
    name: the task name.
    owner: the registering function (e.g. `register_program_task`).
    key: what identifies this registration's arguments (compared with ==).
    **task_kwargs: forwarded to `seqio.TaskRegistry.add`.

  Returns:
    The registered task.

  Raises:
    ValueError: `name` was registered by another owner or other code.
  """
  if name in seqio.TaskRegistry.names():
    existing = seqio.TaskRegistry.get(name)
    previous = _REGISTERED.get(name)
    if previous is None or previous[2] is not existing or previous[0] != owner:
      raise ValueError(f"seqio task {name!r} is already registered by other "
                       "code; pick another name")
    if previous[1] == key:
      return existing
    seqio.TaskRegistry.remove(name)
  task = seqio.TaskRegistry.add(name, **task_kwargs)
  _REGISTERED[name] = (owner, key, task)
  return task


def register_mixture_once(name: str, members: list[tuple[seqio.Task, float]]) -> seqio.Mixture:
  """Registers mixture `name` of (task, rate); an equal one is kept, another replaced."""
  key = tuple((task.name, id(task), float(rate)) for task, rate in members)
  if name in seqio.MixtureRegistry.names():
    if _MIXTURES.get(name) == key:
      return seqio.MixtureRegistry.get(name)
    if name not in _MIXTURES:
      raise ValueError(f"seqio mixture {name!r} is already registered by other code")
    seqio.MixtureRegistry.remove(name)
  _MIXTURES[name] = key
  return seqio.MixtureRegistry.add(name, [(task.name, rate) for task, rate in members])


_MIXTURES: dict[str, tuple] = {}
