r"""Dispatcher: `python -m pad_jax.bench <name> [--flag=value ...]`.

Runs the benchmark module `pad_jax.bench.<name>`. Contract for a benchmark
module (e.g. `execution.py`, `teacher.py`, `decode.py`, `train.py`, `data.py`,
`stepwise.py`):

* it defines its absl flags at module level (only the chosen module is
  imported, so flag names of different benchmarks never clash);
* it defines `main(argv: list[str]) -> int | None`, an absl-style main: the
  dispatcher calls `absl.app.run(module.main, argv=[...])`, so flags are
  parsed (and `--help` works) before `main` receives the remaining argv;
* it writes its results as a JSON object (to `--output`, conventionally
  `benchmarks/<name>.json`), with timings reported as ratios against a
  baseline measured in the same run, since the CPU is shared and noisy.

`python -m pad_jax.bench` (or `--help`) without a name lists the benchmarks.
"""

import importlib
import pkgutil
import sys

from absl import app
from absl import flags


def available() -> list[str]:
  """Names of the benchmark modules in this package."""
  import pad_jax.bench as package  # pylint: disable=import-outside-toplevel
  return sorted(info.name for info in pkgutil.iter_modules(package.__path__)
                if not info.name.startswith("_"))


def main(argv: list[str]) -> int:
  names = available()
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(f"usage: python -m pad_jax.bench <name> [flags]\n"
          f"benchmarks: {', '.join(names)}\n"
          f"`python -m pad_jax.bench <name> --help` lists a benchmark's flags.")
    return 0 if len(argv) >= 2 else 2
  name = argv[1]
  if name not in names:
    print(f"error: unknown benchmark {name!r}; expected one of {names}",
          file=sys.stderr)
    return 2
  module = importlib.import_module(f"pad_jax.bench.{name}")
  if any(arg in ("-h", "--help", "-help", "--helpshort") for arg in argv[2:]):
    print((module.__doc__ or "").strip() + "\n")
    print(flags.FLAGS.module_help(module.__name__))
    return 0
  app.run(module.main, argv=[f"python -m pad_jax.bench {name}"] + argv[2:])
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
