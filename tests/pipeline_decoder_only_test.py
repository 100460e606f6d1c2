"""The pipeline with a decoder-only student (models/tiny_decoder.gin, t5x's DecoderOnlyModel).

The train stage decides the task layout from the model files
(`TrainConfig.decoder_only()`): a `DecoderOnlyModel` student trains on the
decoder-only (prefix LM) layout of `tasks/decoder_tasks.py`, and the seqio
cache, which has the encoder-decoder layout only, is refused up front.
"""

import json
import re

import pytest

from conftest import run_module
from pad_jax.errors import ConfigError
from pad_jax.pipeline import configs
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
