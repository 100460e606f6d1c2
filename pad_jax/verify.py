r"""Re-verify a synthesis output directory from its completions alone.

  python -m pad_jax.verify --in_dir=outputs/teacher_gold [--mode=strict] \
      [--workers=N --timeout_s=S --memory_mb=M]

Extracts, executes (sandboxed) and checks every completion again and rewrites
programs.jsonl, report.json and report.png (in --out_dir, default --in_dir).
The executor flags are the same as every other command's
(`pad_jax.execution.flags`). Bad input or flags (a malformed completions row,
an impossible limit) exit with status 2 and one `error: file:line: ...` line.

On Apache Beam (any runner; the runner's own options after `--`), reading the
completion shards `<in_dir>/completions*.jsonl` and writing
`programs-SSSSS-of-NNNNN.jsonl` plus the same report (docs/scaling.md):

  python -m pad_jax.verify --in_dir=... --out_dir=... --runner=DirectRunner \
      [--num_shards=4] -- --direct_num_workers=2 --direct_running_mode=multi_processing

Without --runner the single-process verifier runs (the default, best for
small inputs).
"""

from __future__ import annotations

from absl import flags

from pad_jax import cli
from pad_jax.execution import flags as exec_flags
from pad_jax.teacher import verify as verify_lib


def main(argv: list[str]) -> int:
  cli.require(in_dir=_IN_DIR.value)
  out = _OUT_DIR.value or _IN_DIR.value
  if _RUNNER.value:
    # Deferred on purpose: Beam takes seconds to import and is optional (setup.py extra `beam`).
    from pad_jax.teacher import beam_verify  # pylint: disable=g-import-not-at-top
    report = beam_verify.verify_beam(_IN_DIR.value, out, exec_flags.limits(),
                                     [f"--runner={_RUNNER.value}", *argv[1:]],
                                     num_shards=_NUM_SHARDS.value)
    programs = f"{out}/{beam_verify.SHARD_PATTERN}"
  else:
    cli.no_arguments(argv)
    report = verify_lib.verify_dir(_IN_DIR.value, exec_flags.limits(), _OUT_DIR.value,
                                   progress=_PROGRESS.value)
    programs = f"{out}/{verify_lib.PROGRAMS_FILE}"
  print(f"kept {report['kept']} programs for {report['questions_with_program']}/"
        f"{report['questions']} questions (coverage {report['coverage']:.2%}, pass rate "
        f"{report['pass_rate']:.2%}) in {report['verify_seconds']:.1f} s; programs: "
        f"{programs}; report: {out}/report.json")
  return 0


# Flags are defined only when this module is the program (as in t5x), so that
# importing it as a library never clashes with another command's flags.
if __name__ == "__main__":
  _IN_DIR = flags.DEFINE_string("in_dir", None, "Directory with completions.jsonl.")
  _OUT_DIR = flags.DEFINE_string("out_dir", None, "Where to write outputs (default: --in_dir).")
  _PROGRESS = flags.DEFINE_boolean("progress", True, "Show a progress bar (single process).")
  _RUNNER = flags.DEFINE_string(
      "runner", None, "Verify on Apache Beam with this runner (DirectRunner, DataflowRunner, "
      "FlinkRunner, ...); the runner's pipeline options follow `--`. Default: one process.")
  _NUM_SHARDS = flags.DEFINE_integer("num_shards", 4, "Beam: programs-*.jsonl shards.",
                                     lower_bound=1)
  exec_flags.define()
  flags.adopt_module_key_flags(exec_flags)  # List the executor flags in --help.
  cli.run(main)
