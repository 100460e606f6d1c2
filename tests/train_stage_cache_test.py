"""The pipeline's train stage on a seqio cache: when, the cache build, the t5x flags."""

import pathlib

import pytest
import seqio

from pad_jax.data import programs
from pad_jax.data import synthetic
from pad_jax.errors import ConfigError
from pad_jax.pipeline import configs
from pad_jax.pipeline import train_stage
from pad_jax.pipeline.stage import StageContext
from tasks import cached_program_tasks


def test_when_the_stage_caches():
  rows = {"a": [0] * 60, "b": [0] * 50}
  assert not train_stage.use_cache(configs.TrainConfig(), rows)
  assert train_stage.use_cache(configs.TrainConfig(cache_min_examples=110), rows)
  assert not train_stage.use_cache(configs.TrainConfig(cache_min_examples=111), rows)
  assert train_stage.use_cache(configs.TrainConfig(use_cached_tasks=True), rows)
  assert not train_stage.use_cache(
      configs.TrainConfig(use_cached_tasks=False, cache_min_examples=1), rows)
  assert not train_stage.use_cache(configs.TrainConfig(task_format="cot", cache_min_examples=1),
                                   rows)
  with pytest.raises(ConfigError, match=r"^TrainConfig.use_cached_tasks: .*'program' only"):
    configs.TrainConfig(task_format="cot", use_cached_tasks=True).validate()
  command = train_stage.t5x_train_command(configs.TrainConfig(), pathlib.Path("/m"),
                                          pathlib.Path("/t.gin"), cache_dir=pathlib.Path("/c"))
  assert "--gin.USE_CACHED_TASKS=True" in command
  assert "--seqio_additional_cache_dirs=/c" in command


def test_build_cache_makes_the_mixture_t5x_reads(tmp_path):
  paths = {}
  for source, seed in (("synthetic", 0), ("gold", 1)):
    paths[source] = str(tmp_path / f"{source}.jsonl")
    programs.write_programs(paths[source], synthetic.generate("train", 40, seed=seed))
  cfg = configs.TrainConfig(source_rates={"synthetic": 3.0, "gold": 1.0}, use_cached_tasks=True)
  ctx = StageContext(run=None, stage_dir=tmp_path / "train", bar=None)
  name = "pad_stage_cache_test"
  gin_text = train_stage.task_gin(name, paths, cfg, cached=True)
  assert "MIXTURE_OR_TASK_NAME = @tasks.cached_program_tasks.cached_program_task()" in gin_text
  assert "vocabulary = %VOCABULARY" in gin_text and "task_format" not in gin_text

  cache = train_stage.build_cache(ctx, cfg, name, paths, ["models/tiny.gin"])
  for member in (f"{name}_gold", f"{name}_synthetic"):
    assert (cache / member / "COMPLETED").exists()
  (ctx.path("seqio_cache.log")).unlink()
  assert train_stage.build_cache(ctx, cfg, name, paths, ["models/tiny.gin"]) == cache
  assert not ctx.path("seqio_cache.log").exists()  # Finished caches are not rebuilt.

  # What the t5x child registers (task.gin with the tiny model's VOCABULARY).
  seqio.add_global_cache_dirs([str(cache)])
  cached_program_tasks.cached_program_task(
      name, paths, rates=cfg.source_rates, vocabulary=synthetic.demo_vocabulary(),
      validation_fraction=cfg.validation_fraction, seed=cfg.data_seed)
  mixture = seqio.get_mixture_or_task(name)
  assert sorted((t.name, mixture.get_rate(t)) for t in mixture.tasks) == [
      (f"{name}_gold", 1.0), (f"{name}_synthetic", 3.0)]
  total = sum(t.num_input_examples(s) for t in mixture.tasks for s in ("train", "validation"))
  assert total == 80
  for task in mixture.tasks:
    ds = task.get_dataset({"inputs": 64, "targets": 256}, split="train", use_cached=True,
                          shuffle=False)
    assert sum(1 for _ in ds.as_numpy_iterator()) == task.num_input_examples("train") > 0
  mixed = mixture.get_dataset({"inputs": 64, "targets": 256}, split="train", use_cached=True,
                              seed=0)
  assert len(list(mixed.take(8).as_numpy_iterator())) == 8
