r"""Program synthesis CLI: a teacher writes programs, the executor keeps the right ones.

  python -m pad_jax.synthesize --teacher=gold --benchmark=gsm8k --split=train \
      --out_dir=outputs/teacher_gold
  python -m pad_jax.synthesize --teacher=openai --base_url=http://localhost:8000/v1 \
      --model=NAME --benchmark=gsm8k --split=train --limit=100 --samples=4 \
      --concurrency=16 --out_dir=outputs/teacher_openai

Writes OUT_DIR/completions.jsonl (the durable cache: re-running resumes),
failed.jsonl, programs.jsonl (the program dataset), report.json, report.png
and run.json. The API key comes from OPENAI_API_KEY or --api_key_file and is
never written anywhere. The executor flags (--workers, --timeout_s,
--memory_mb, --mode, ...) are the same as every other command's
(`pad_jax.execution.flags`). Bad input or flags exit with status 2 and one
`error: ...` line (naming file:line:field for bad data). See
pad_jax/teacher/synthesize.py for the Python API.

--program_style (gold teacher): `concise` (default; steps only, fits a
256-token student) or `verbose` (question docstring, rationale comments).
--max_target_tokens: report.json's `target_budget` counts kept programs
longer than this many CodeT5 target tokens; --drop_over_budget removes them
from programs.jsonl.
"""

from __future__ import annotations

from absl import flags
from absl import logging

from pad_jax import cli
from pad_jax.errors import ConfigError
from pad_jax.execution import flags as exec_flags
from pad_jax.teacher import client as client_lib
from pad_jax.teacher import gold
from pad_jax.teacher import prompts
from pad_jax.teacher import report as report_lib
from pad_jax.teacher import synthesize as synth


def _openai_config() -> synth.OpenAIConfig:
  retry = client_lib.RetryPolicy(max_attempts=_MAX_ATTEMPTS.value,
                                 backoff_base_s=_BACKOFF.value,
                                 timeout_s=_REQUEST_TIMEOUT.value)
  return synth.OpenAIConfig(
      base_url=_BASE_URL.value, model=_MODEL.value, samples=_SAMPLES.value,
      variants=tuple(prompts.parse_variants(_VARIANTS.value)), temperature=_TEMPERATURE.value,
      top_p=_TOP_P.value, max_tokens=_MAX_TOKENS.value, concurrency=_CONCURRENCY.value,
      rpm=_RPM.value, tpm=_TPM.value, retry=retry, max_cost_usd=_MAX_COST.value,
      price_input_per_mtok=_PRICE_IN.value, price_output_per_mtok=_PRICE_OUT.value,
      use_n=_USE_N.value, batch=_BATCH.value, batch_poll_s=_BATCH_POLL.value,
      progress=_PROGRESS.value)


def _run() -> dict:
  """Checks the flags, then runs the teacher; ConfigError / DataError for bad flags or input."""
  limits = exec_flags.limits()
  openai_config = _openai_config()
  api_key = None
  if _TEACHER.value == "openai":
    openai_config.validate()
    api_key = synth.resolve_api_key(openai_config.base_url, None, _KEY_FILE.value)
  elif _BENCHMARK.value != "gsm8k":
    raise ConfigError(f"--teacher=gold needs GSM8K rationales; --benchmark={_BENCHMARK.value} "
                     "has none")
  return synth.synthesize(_TEACHER.value, _BENCHMARK.value, _SPLIT.value, _OUT_DIR.value,
                          limit=_LIMIT.value, data_dir=_DATA_DIR.value,
                          openai_config=openai_config, limits=limits, api_key=api_key,
                          verify=_VERIFY.value, progress=_PROGRESS.value,
                          program_style=_STYLE.value,
                          budget=report_lib.TargetBudget(_MAX_TARGET_TOKENS.value,
                                                         drop=_DROP_OVER_BUDGET.value))


def _print_summary(report: dict) -> None:
  if "kept" in report:
    print(f"kept {report['kept']} programs for {report['questions_with_program']}/"
          f"{report['questions']} questions (coverage {report['coverage']:.2%}, pass rate "
          f"{report['pass_rate']:.2%}, {report['failed_requests']} failed, "
          f"${report['cost_usd']:.4f}); report: {_OUT_DIR.value}/report.json")
    budget = report["target_budget"]
    print(f"{budget['over_budget']} kept programs over {budget['max_target_tokens']} target "
          f"tokens ({budget['dropped']} dropped)")
  else:
    print(f"{report['completions']} completions in {_OUT_DIR.value}/completions.jsonl")
  if report.get("stopped"):
    print(f"stopped early: {report['stopped']}; re-run the same command to continue")


def main(argv: list[str]) -> int:
  cli.no_arguments(argv)
  cli.require(out_dir=_OUT_DIR.value)
  report = _run()
  _print_summary(report)
  logging.flush()
  return 0


# Flags are defined only when this module is the program (as in t5x), so that
# importing it as a library never clashes with another command's flags.
if __name__ == "__main__":
  _TEACHER = flags.DEFINE_enum("teacher", "gold", ["gold", "openai"],
                               "gold: offline GSM8K-rationale teacher; openai: any "
                               "OpenAI-compatible chat server.")
  _BENCHMARK = flags.DEFINE_string("benchmark", "gsm8k", "Benchmark to read questions from.")
  _SPLIT = flags.DEFINE_string("split", "train", "Benchmark split.")
  _DATA_DIR = flags.DEFINE_string("data_dir", None, "Data directory (default: PAD_DATA_DIR or "
                                  "../shared/data).")
  _LIMIT = flags.DEFINE_integer("limit", None, "Only the first N questions.", lower_bound=1)
  _OUT_DIR = flags.DEFINE_string("out_dir", None, "Output directory (re-running resumes).")
  _BASE_URL = flags.DEFINE_string("base_url", "https://api.openai.com/v1",
                                  "OpenAI-compatible server (OpenAI, vLLM, SGLang, llama.cpp).")
  _MODEL = flags.DEFINE_string("model", "gpt-4o-mini", "Model name on the server.")
  _SAMPLES = flags.DEFINE_integer("samples", 1, "Completions per question.", lower_bound=1)
  _VARIANTS = flags.DEFINE_string("prompt_variants", "all",
                                  "Prompt variants: 'all' or a comma list (sample k uses the "
                                  "(k mod count)-th).")
  _USE_N = flags.DEFINE_boolean("use_n", False, "Request the samples of one prompt with `n` "
                                "instead of repeated requests.")
  _TEMPERATURE = flags.DEFINE_float("temperature", 0.7, "Sampling temperature.")
  _TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling top_p.")
  _MAX_TOKENS = flags.DEFINE_integer("max_tokens", 512, "Max completion tokens.", lower_bound=1)
  _CONCURRENCY = flags.DEFINE_integer("concurrency", 16, "Requests in flight.", lower_bound=1)
  _RPM = flags.DEFINE_float("rpm", None, "Requests-per-minute limit.")
  _TPM = flags.DEFINE_float("tpm", None, "Tokens-per-minute limit.")
  _MAX_ATTEMPTS = flags.DEFINE_integer("max_attempts", 6, "Attempts per request before it is "
                                       "recorded as failed.", lower_bound=1)
  _REQUEST_TIMEOUT = flags.DEFINE_float("request_timeout_s", 60.0, "Timeout of one attempt.")
  _BACKOFF = flags.DEFINE_float("backoff_base_s", 0.5, "First retry backoff (doubles, jittered).")
  _MAX_COST = flags.DEFINE_float("max_cost_usd", None, "Stop cleanly once the estimated spend "
                                 "of OUT_DIR reaches this (resumable).")
  _PRICE_IN = flags.DEFINE_float("price_input_per_mtok", None, "USD per 1M input tokens "
                                 "(overrides the built-in table).")
  _PRICE_OUT = flags.DEFINE_float("price_output_per_mtok", None, "USD per 1M output tokens.")
  _KEY_FILE = flags.DEFINE_string("api_key_file", None, "File holding the API key (else "
                                  "OPENAI_API_KEY).")
  _BATCH = flags.DEFINE_boolean("batch", False, "Use the OpenAI Batch API.")
  _BATCH_POLL = flags.DEFINE_float("batch_poll_s", 10.0, "Seconds between batch status polls.")
  _VERIFY = flags.DEFINE_boolean("verify", True, "Verify while synthesizing and write "
                                 "programs.jsonl/report.json.")
  _PROGRESS = flags.DEFINE_boolean("progress", True, "Show a progress bar.")
  _STYLE = flags.DEFINE_enum("program_style", gold.DEFAULT_STYLE, list(gold.STYLES),
                             "Gold teacher: concise (steps only) or verbose (question "
                             "docstring and rationale comments).")
  _MAX_TARGET_TOKENS = flags.DEFINE_integer(
      "max_target_tokens", report_lib.DEFAULT_MAX_TARGET_TOKENS,
      "The student's target budget in CodeT5 tokens (incl. EOS): report.json counts kept "
      "programs over it.", lower_bound=2)
  _DROP_OVER_BUDGET = flags.DEFINE_boolean("drop_over_budget", False,
                                           "Drop kept programs over --max_target_tokens "
                                           "(counted in report.json).")
  exec_flags.define()
  flags.adopt_module_key_flags(exec_flags)  # List the executor flags in --help.
  cli.run(main)
