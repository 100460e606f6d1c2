"""pad_jax.checkpoints: the one way to find a model directory's checkpoints."""

import pytest

from pad_jax import checkpoints


def _model_dir(tmp_path):
  for step in (0, 10, 2):
    (tmp_path / f"checkpoint_{step}").mkdir()
  # Not checkpoints: Orbax's in-progress names, `.tmp`, files, other names.
  (tmp_path / "checkpoint_30.orbax-checkpoint-tmp-7").mkdir()
  (tmp_path / "checkpoint_40.tmp").mkdir()
  (tmp_path / "checkpoint_50").write_text("a file")
  (tmp_path / "checkpoint_x").mkdir()
  (tmp_path / "train").mkdir()
  return tmp_path


def test_steps_and_latest_ignore_unfinished_and_files(tmp_path):
  model_dir = _model_dir(tmp_path)
  assert checkpoints.checkpoint_steps(model_dir) == [0, 2, 10]
  assert checkpoints.checkpoint_steps(str(model_dir)) == [0, 2, 10]
  assert checkpoints.latest_checkpoint(model_dir) == str(
      model_dir / "checkpoint_10")
  assert checkpoints.checkpoint_steps(tmp_path / "missing") == []
  assert checkpoints.latest_checkpoint(tmp_path / "missing") is None
  (tmp_path / "empty").mkdir()
  assert checkpoints.latest_checkpoint(tmp_path / "empty") is None


def test_checkpoint_step_reads_the_name_only():
  assert checkpoints.checkpoint_step("/runs/a/checkpoint_1200") == 1200
  assert checkpoints.checkpoint_step("/runs/a/checkpoint_1200/") == 1200
  assert checkpoints.checkpoint_step("gs://b/run/checkpoint_7") == 7
  assert checkpoints.checkpoint_step("/runs/a/checkpoint_7.tmp") is None
  assert checkpoints.checkpoint_step("/runs/a") is None
  assert checkpoints.checkpoint_dir("gs://b/run/", 3) == "gs://b/run/checkpoint_3"


def test_resolve_checkpoint(tmp_path):
  model_dir = _model_dir(tmp_path)
  assert checkpoints.resolve_checkpoint(model_dir) == str(
      model_dir / "checkpoint_10")
  specific = str(model_dir / "checkpoint_2")
  assert checkpoints.resolve_checkpoint(specific) == specific
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match=r"empty: no checkpoint_<step> "
                     "directory in it"):
    checkpoints.resolve_checkpoint(tmp_path / "empty")
  with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
    checkpoints.resolve_checkpoint(tmp_path / "missing")
  with pytest.raises(FileNotFoundError, match="not found"):
    checkpoints.resolve_checkpoint(tmp_path / "checkpoint_50")  # a file


def test_remote_paths_go_through_gfile():
  tf = pytest.importorskip("tensorflow")
  gfile = tf.io.gfile
  root = "ram://checkpoints_test/run"
  for name in ("checkpoint_3", "checkpoint_10",
               "checkpoint_12.orbax-checkpoint-tmp-1"):
    gfile.makedirs(f"{root}/{name}")
  with gfile.GFile(f"{root}/checkpoint_20", "w") as f:
    f.write("a file")
  assert checkpoints.checkpoint_steps(root) == [3, 10]
  assert checkpoints.latest_checkpoint(root + "/") == f"{root}/checkpoint_10"
  assert checkpoints.resolve_checkpoint(root) == f"{root}/checkpoint_10"
