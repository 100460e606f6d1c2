r"""Re-verify a synthesis output directory from its completions.jsonl alone.

  python -m pad_jax.verify --in_dir=runs/teacher_gold [--mode=strict]

Extracts, executes (sandboxed) and checks every completion again and rewrites
programs.jsonl, report.json and report.png (in --out_dir, default --in_dir).
"""

import sys

from absl import app
from absl import flags


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]} (flags are --name=value)")
  if not _IN_DIR.value:
    sys.exit("error: --in_dir is required")
  from pad_jax.teacher import verify as verify_lib  # pylint: disable=g-import-not-at-top
  try:
    config = verify_lib.VerifyConfig(mode=_MODE.value, workers=_WORKERS.value,
                                     timeout_s=_EXEC_TIMEOUT.value, memory_mb=_EXEC_MEMORY.value)
    report = verify_lib.verify_dir(_IN_DIR.value, config, _OUT_DIR.value,
                                   progress=_PROGRESS.value)
  except (ValueError, OSError) as e:
    sys.exit(f"error: {e}")
  out = _OUT_DIR.value or _IN_DIR.value
  print(f"kept {report['kept']} programs for {report['questions_with_program']}/"
        f"{report['questions']} questions (coverage {report['coverage']:.2%}, pass rate "
        f"{report['pass_rate']:.2%}) in {report['verify_seconds']:.1f} s; report: "
        f"{out}/report.json")


# Flags are defined only when this module is the program (as in t5x), so that
# importing it as a library never clashes with another command's flags.
if __name__ == "__main__":
  _IN_DIR = flags.DEFINE_string("in_dir", None, "Directory with completions.jsonl.")
  _OUT_DIR = flags.DEFINE_string("out_dir", None, "Where to write outputs (default: --in_dir).")
  _MODE = flags.DEFINE_enum("mode", "pad", ["pad", "strict"], "Answer comparison for keeping "
                            "a program.")
  _WORKERS = flags.DEFINE_integer("exec_workers", None, "Executor processes (default: CPUs).")
  _EXEC_TIMEOUT = flags.DEFINE_float("exec_timeout_s", 5.0, "Time limit per program.")
  _EXEC_MEMORY = flags.DEFINE_integer("exec_memory_mb", 512, "Memory limit per program.")
  _PROGRESS = flags.DEFINE_boolean("progress", True, "Show a progress bar.")
  app.run(main)
