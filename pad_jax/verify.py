r"""Re-verify a synthesis output directory from its completions.jsonl alone.

  python -m pad_jax.verify --in_dir=outputs/teacher_gold [--mode=strict] \
      [--workers=N --timeout_s=S --memory_mb=M]

Extracts, executes (sandboxed) and checks every completion again and rewrites
programs.jsonl, report.json and report.png (in --out_dir, default --in_dir).
The executor flags are the same as every other command's
(`pad_jax.execution.flags`). Bad input or flags (a malformed completions row,
an impossible limit) exit with status 2 and one `error: file:line: ...` line.
"""

from __future__ import annotations

from absl import flags

from pad_jax import cli
from pad_jax.execution import flags as exec_flags
from pad_jax.teacher import verify as verify_lib


def main(argv: list[str]) -> int:
  cli.no_arguments(argv)
  cli.require(in_dir=_IN_DIR.value)
  report = verify_lib.verify_dir(_IN_DIR.value, exec_flags.limits(), _OUT_DIR.value,
                                 progress=_PROGRESS.value)
  out = _OUT_DIR.value or _IN_DIR.value
  print(f"kept {report['kept']} programs for {report['questions_with_program']}/"
        f"{report['questions']} questions (coverage {report['coverage']:.2%}, pass rate "
        f"{report['pass_rate']:.2%}) in {report['verify_seconds']:.1f} s; report: "
        f"{out}/report.json")
  return 0


# Flags are defined only when this module is the program (as in t5x), so that
# importing it as a library never clashes with another command's flags.
if __name__ == "__main__":
  _IN_DIR = flags.DEFINE_string("in_dir", None, "Directory with completions.jsonl.")
  _OUT_DIR = flags.DEFINE_string("out_dir", None, "Where to write outputs (default: --in_dir).")
  _PROGRESS = flags.DEFINE_boolean("progress", True, "Show a progress bar.")
  exec_flags.define()
  flags.adopt_module_key_flags(exec_flags)  # List the executor flags in --help.
  cli.run(main)
