"""The pipeline with a decoder-only student (models/tiny_decoder.gin, t5x's DecoderOnlyModel).

The train stage decides the task layout from the model files
(`TrainConfig.decoder_only()`): a `DecoderOnlyModel` student trains on the
decoder-only (prefix LM) layout of `tasks/decoder_tasks.py`, and the seqio
cache, which has the encoder-decoder layout only, is refused up front. The
refine stage gives its refinement mixture the same layout (its round's
refine.gin; a real run in tests/refine_decoder_only_test.py); the
stepwise_verifier stage's T5 verifier needs model files of its own, checked
up front (tests/stepwise_verifier_stage_test.py).
"""

import json
import re

import gin
import pytest

from conftest import run_module
from pad_jax.errors import ConfigError
from pad_jax.pipeline import configs
from pad_jax.pipeline import refine_stage
from pad_jax.pipeline import train_stage
from pipeline_test import TOY_BINDINGS

DECODER = "TrainConfig.model_gin_files = ['models/tiny_decoder.gin']"


@pytest.mark.parametrize("files, expected", [
    (["models/tiny_decoder.gin"], True),  # MODEL comes from an included file
    (["models/smollm2_135m.gin"], True),
    (["models/tiny.gin"], False),
    (["models/codet5_small.gin"], False),
])
def test_decoder_only_is_read_from_the_model_files(files, expected):
  assert configs.TrainConfig(model_gin_files=files).decoder_only() is expected


def test_a_later_model_file_decides(tmp_path):
  override = tmp_path / "t5_model.gin"
  override.write_text("from __gin__ import dynamic_registration\nfrom t5x import models\n"
                      "MODEL = @models.EncoderDecoderModel()\n")
  cfg = configs.TrainConfig(model_gin_files=["models/tiny_decoder.gin", str(override)])
  assert not cfg.decoder_only()


@pytest.mark.parametrize("field, value", [
    ("use_cached_tasks", True), ("task_format", "cot"), ("vocabulary_macro", None)])
def test_decoder_only_student_refuses_what_it_cannot_train_on(field, value):
  cfg = configs.TrainConfig(model_gin_files=["models/tiny_decoder.gin"], **{field: value})
  with pytest.raises(ConfigError, match=f"^TrainConfig.{field}: .*decoder-only"):
    cfg.validate()
  configs.TrainConfig(model_gin_files=["models/tiny.gin"], use_cached_tasks=True).validate()


def test_task_gin_layout():
  cfg = configs.TrainConfig(model_gin_files=["models/tiny_decoder.gin"])
  paths = {"gold": "/d/gold.jsonl"}
  assert "  decoder_only = True" in train_stage.task_gin("t", paths, cfg, decoder_only=True)
  assert "decoder_only" not in train_stage.task_gin("t", paths, cfg)
  # Many programs would cache (cache_min_examples), but not for a decoder-only student.
  big = {"gold": [object()] * cfg.cache_min_examples}
  assert train_stage.use_cache(cfg, big) and not train_stage.use_cache(cfg, big, True)
  with pytest.raises(Exception, match="use_cached_tasks"):
    train_stage.task_gin("t", paths, cfg, cached=True, decoder_only=True)


def test_refine_gin_layout(tmp_path):
  """The refine stage's round gin: the decoder-only layout for a decoder-only student only."""
  cfg = configs.TrainConfig()
  gin_dir = configs.GIN_CONFIGS / "models"
  layouts = {}
  for model in ("tiny_decoder.gin", "tiny.gin"):
    # The train stage's summary names its copies of the model files (absolute paths).
    copy = tmp_path / f"model0_{model}"
    copy.write_text((gin_dir / model).read_text())
    trained = {"model_gin_files": [str(copy)]}
    decoder_only = refine_stage.student_is_decoder_only(cfg, trained)
    layouts[model] = refine_stage.refine_gin(tmp_path / "refine.jsonl", tmp_path / "p.jsonl",
                                             "/m/checkpoint_2", decoder_only,
                                             cfg.vocabulary_macro)
  assert "decoder_only" not in layouts["tiny.gin"]
  decoder = layouts["tiny_decoder.gin"]
  assert "refine_tasks.refine_mixture.decoder_only = True" in decoder
  assert "refine_tasks.refine_mixture.vocabulary = %VOCABULARY" in decoder
  gin.clear_config()
  try:  # It parses as the last gin file of the t5x command line.
    gin.parse_config(decoder)
    assert gin.query_parameter("tasks.refine_tasks.refine_mixture.decoder_only") is True
    assert gin.query_parameter("%INITIAL_CHECKPOINT_PATH") == "/m/checkpoint_2"
  finally:
    gin.clear_config()
  with pytest.raises(Exception, match="TrainConfig.vocabulary_macro"):
    refine_stage.refine_gin(tmp_path / "r.jsonl", tmp_path / "p.jsonl", "/m/c", True, None)


@pytest.mark.slow  # ~90 s; the T5 toy pipeline (tests/pipeline_test.py) runs by default
def test_toy_pipeline_with_a_decoder_only_student(tmp_path):
  run_dir = tmp_path / "run"
  bindings = [b for b in TOY_BINDINGS if not b.startswith("TrainConfig.train_steps")]
  bindings += [DECODER, "TrainConfig.train_steps = 10"]
  result = run_module("pad_jax.pipeline", "--gin_file=gin_configs/pipelines/demo.gin",
                      f"--gin.RUN_DIR='{run_dir}'", *["--gin_bindings=" + b for b in bindings],
                      timeout=900)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

  # The training task has the decoder-only layout, in the task file and in
  # the operative config t5x saved.
  assert "decoder_only = True" in (run_dir / "train/task.gin").read_text()
  saved = (run_dir / "train/model/config.gin").read_text()
  assert "models.DecoderOnlyModel" in saved
  alias = re.search(r"^import tasks\.pipeline_tasks(?: as (\w+))?$", saved, re.M)
  alias = alias.group(1) or "tasks.pipeline_tasks"
  assert f"\n{alias}.program_task.decoder_only = True\n" in saved

  report = json.loads((run_dir / "report.json").read_text())
  for key in ("synthetic_accuracy", "gsm8k_accuracy", "synthetic_runnable_rate",
              "gsm8k_runnable_rate"):
    assert 0 <= report[key] <= 1, key
  assert set(report["stage_wall_s"]) == {"synthesize", "verify", "train", "decode", "score"}
