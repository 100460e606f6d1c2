"""Idempotent seqio task and mixture registration: every `add` of tasks/ is here.

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

`register_mixture_once(name, members)` does the same for a mixture, and
`register_sources(name, jsonl_paths, register_source)` is the one way a
dataset given as one file or as `{source: file}` becomes a task or a mixture
of one task per source (the program-task factories of `tasks.pipeline_tasks`
and `tasks.cached_program_tasks`).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Mapping, Optional, Union

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
  """Registers mixture `name` of (task, rate); an equal one is kept, another replaced.

  Raises:
    ValueError: `name` is a mixture registered by other code.
  """
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


def source_task_names(name: str, jsonl_paths: Union[str, Mapping[str, str]]) -> list[str]:
  """The task names `register_sources` registers: `name`, or `<name>_<source>` each."""
  if isinstance(jsonl_paths, str):
    return [name]
  return [f"{name}_{source}" for source in sorted(jsonl_paths)]


def register_sources(name: str, jsonl_paths: Union[str, Mapping[str, str]],
                     register_source: Callable[[str, str], seqio.Task],
                     rates: Optional[Mapping[str, float]] = None,
                     default_rate: Callable[[seqio.Task, str], float] = lambda task, path: 1.0
                     ) -> str:
  """Registers task `name` from one file, or a mixture of one task per source.

  Args:
    name: the task (one file) or mixture (`{source: file}`) name.
    jsonl_paths: a file (or glob), or `{source: file}`.
    register_source: `register_source(task_name, path)` registers (idempotently)
      one source's task and returns it.
    rates: mixing rate per source; a missing source gets `default_rate`.
    default_rate: `default_rate(task, path)`, a source's rate when `rates`
      lacks it.

  Returns:
    `name`, for `MIXTURE_OR_TASK_NAME`.

  Raises:
    ValueError: `jsonl_paths` is an empty mapping, or a name is registered by
      other code.
  """
  if isinstance(jsonl_paths, str):
    register_source(name, jsonl_paths)
    return name
  if not jsonl_paths:
    raise ValueError(f"{name}: jsonl_paths is empty")
  members = []
  for source, task_name in zip(sorted(jsonl_paths), source_task_names(name, jsonl_paths)):
    task = register_source(task_name, jsonl_paths[source])
    rate = (rates or {}).get(source)
    members.append((task, float(default_rate(task, jsonl_paths[source]) if rate is None else rate)))
  register_mixture_once(name, members)
  return name
