"""pad_jax.infer: end-to-end against Hugging Face (tokenizer + generate).

A small random CodeT5-vocabulary T5 is built with transformers, imported
with `pad_jax.convert_hf`, and decoded by `pad_jax.infer` from questions;
greedy token ids must equal `generate` on the HF CodeT5 tokenizer's ids.
A tiny `t5x.train` MODEL_DIR is decoded from its own config.gin.
"""

import dataclasses
import json
import subprocess
import sys

from absl import flags
import pytest

from pad_jax import infer as infer_cli
from pad_jax.student import hf_import as convert_hf
from pad_jax.decoding import decoder as infer
from pad_jax.decoding import files as decode_files
from pad_jax.decoding.settings import DecodeSettings
from pad_jax.errors import ConfigError, DataError
import train_testlib as tl

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

QUESTIONS = [
    "Tom has 3 apples and buys 5 more. How many apples does he have?",
    "A train travels 60 miles per hour for 2.5 hours. How far does it go?",
    "What is 12 times 7?",
]
MAX_DECODE = 12


@pytest.fixture(scope="module")
def student(tmp_path_factory, shared_data):
  """(hf_model, tokenizer, model_dir) for a random tiny CodeT5-vocab T5."""
  tmp = tmp_path_factory.mktemp("student")
  torch.manual_seed(0)
  config = transformers.T5Config(
      vocab_size=32100, d_model=32, d_kv=8, num_heads=4, d_ff=64,
      num_layers=2, num_decoder_layers=2, dropout_rate=0.0, pad_token_id=0,
      eos_token_id=2, bos_token_id=1, decoder_start_token_id=0)
  model = transformers.T5ForConditionalGeneration(config).eval()
  model.save_pretrained(str(tmp / "hf"))
  convert_hf.convert(str(tmp / "hf"), str(tmp / "ckpt"))
  tokenizer = transformers.RobertaTokenizer.from_pretrained(
      str(shared_data / "codet5_tokenizer"))
  return model, tokenizer, str(tmp / "ckpt")


def _write_inputs(path, questions=QUESTIONS):
  with open(path, "w") as f:
    for i, q in enumerate(questions):
      f.write(json.dumps({"id": f"q{i}", "question": q, "answer": i}) + "\n")
  return str(path)


def _read(path):
  return [json.loads(line) for line in open(path)]


def test_greedy_matches_hf_generate_and_resumes(student, tmp_path):
  hf_model, tokenizer, model_dir = student
  inputs = _write_inputs(tmp_path / "in.jsonl")
  out = str(tmp_path / "out.jsonl")
  # Decode the first two, then "crash" mid-row; the rerun finishes the rest.
  _write_inputs(tmp_path / "first.jsonl", QUESTIONS[:2])
  settings = DecodeSettings(max_decode_length=MAX_DECODE, batch_size=2)
  summary = decode_files.decode_file(settings, model_dir, str(tmp_path / "first.jsonl"),
                                     out, progress=False)
  assert summary["decoded"] == 2
  with open(out, "a") as f:
    f.write('{"id": "q2", "predic')
  summary = decode_files.decode_file(settings, model_dir, inputs, out, progress=False)
  assert (summary["decoded"], summary["skipped"]) == (1, 2)
  rows = _read(out)
  assert [r["id"] for r in rows] == ["q0", "q1", "q2"]
  assert [r["answer"] for r in rows] == [0, 1, 2]  # Input fields carried.

  encoded = tokenizer(QUESTIONS, padding=True, return_tensors="pt")
  with torch.no_grad():
    hf = hf_model.generate(**encoded, max_new_tokens=MAX_DECODE,
                           do_sample=False, num_beams=1).numpy()[:, 1:]
  for row, hf_row in zip(rows, hf):
    hf_ids = [int(t) for t in hf_row]
    if 2 in hf_ids:
      hf_ids = hf_ids[:hf_ids.index(2) + 1]
    assert row["tokens"] == hf_ids
    assert row["prediction"] == tokenizer.decode(hf_ids,
                                                 skip_special_tokens=True)
    assert "predictions" not in row


def test_sample_and_beam_write_k_decodes(student, tmp_path):
  _, _, model_dir = student
  inputs = _write_inputs(tmp_path / "in.jsonl", QUESTIONS[:2])
  out = str(tmp_path / "sample.jsonl")
  decode_files.decode_file(
      DecodeSettings(decode="sample", num_decodes=3, temperature=1.0, top_k=20,
                     max_decode_length=MAX_DECODE, batch_size=2, seed=1),
      model_dir, inputs, out, progress=False)
  for row in _read(out):
    assert len(row["predictions"]) == len(row["predictions_tokens"]) == 3
    assert row["scores"] == sorted(row["scores"], reverse=True)
    assert row["prediction"] == row["predictions"][0]
    assert len({tuple(t) for t in row["predictions_tokens"]}) > 1
  out = str(tmp_path / "beam.jsonl")
  decode_files.decode_file(
      DecodeSettings(decode="beam", beam_size=3, num_decodes=2,
                     max_decode_length=MAX_DECODE, batch_size=2),
      model_dir, inputs, out, progress=False)
  for row in _read(out):
    assert len(row["predictions"]) == 2
    assert row["scores"][0] >= row["scores"][1]


def test_bad_inputs_name_the_line(tmp_path):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"id": 1, "question": "ok"}\n\n{"id": 2}\n')
  with pytest.raises(DataError, match=r"bad.jsonl:3: field 'question': "
                     "missing"):
    infer.read_inputs(str(path))
  path.write_text('{"id": 1, "question": "a"}\n{"id": 1, "question": "b"}\n')
  with pytest.raises(DataError, match=r":2: field 'id': duplicate of line 1"):
    infer.read_inputs(str(path))
  path.write_text('{"id": true, "question": "a"}\n')
  with pytest.raises(DataError, match=r":1: field 'id': must be a string"):
    infer.read_inputs(str(path))
  path.write_text('{"id": 1, "question": "a"}\nnot json\n')
  with pytest.raises(DataError, match=r":2: invalid JSON"):
    infer.read_inputs(str(path))
  with pytest.raises(DataError, match="missing.jsonl: file not found"):
    infer.read_inputs(str(tmp_path / "missing.jsonl"))
  with pytest.raises(ConfigError, match="^DecodeSettings.num_decodes"):
    decode_files.decode_file(DecodeSettings(decode="greedy", num_decodes=2),
                             str(tmp_path), str(path), str(tmp_path / "out.jsonl"))
  # The CLI: a one-line error naming file, line (and field), exit status 2.
  proc = _infer_cli(f"--checkpoint_dir={tmp_path}", f"--input={path}",
                    f"--output={tmp_path / 'out.jsonl'}")
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: {path}:2: invalid JSON (Expecting value at column 1)")
  path.write_text('{"id": 1}\n')
  proc = _infer_cli(f"--checkpoint_dir={tmp_path}", f"--input={path}",
                    f"--output={tmp_path / 'out.jsonl'}")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: {path}:1: field 'question': missing field")
  assert "Traceback" not in proc.stderr


def _infer_cli(*flags, env=None):
  return subprocess.run([sys.executable, "-m", "pad_jax.infer", *flags],
                        capture_output=True, text=True, timeout=300,
                        check=False, env=env, cwd=tl.REPO)


def test_help_lists_the_flags():
  proc = _infer_cli("--help")
  # absl prints the usage and exits with status 1 (its convention).
  assert proc.returncode in (0, 1), proc.stderr[-2000:]
  assert "--checkpoint_dir" in proc.stdout and "--num_decodes" in proc.stdout
  for field in dataclasses.fields(DecodeSettings):  # one flag per setting
    assert f"--{field.name}" in proc.stdout or f"--[no]{field.name}" in proc.stdout
  assert "Traceback" not in proc.stderr


def test_resume_reads_without_changing_the_output(tmp_path):
  out = tmp_path / "out.jsonl"
  assert infer.read_done_ids(str(out)) == set()
  text = '{"id": "q0", "prediction": "x"}\n{"id": 7}\n{"id": "q2", "pred'
  out.write_text(text)
  assert infer.read_done_ids(str(out)) == {"q0", 7}
  assert out.read_text() == text  # the torn tail is cut by the appender only
  out.write_text('{"id": "q0"}\nnot json\n{"id": "q2"}\n')
  with pytest.raises(DataError, match=r"out.jsonl:2: invalid JSON"):
    infer.read_done_ids(str(out))
  out.write_text('{"id": "q0"}\n{"question": "?"}\n')
  with pytest.raises(DataError, match=r"out.jsonl:2: field 'id': missing: "
                     "not an infer output row"):
    infer.read_done_ids(str(out))


def test_model_gin_files_next_to_the_checkpoint(tmp_path):
  ckpt = tmp_path / "checkpoint_2"
  ckpt.mkdir()
  with pytest.raises(FileNotFoundError, match="no model.gin next to the "
                     "checkpoint and no t5x config.gin"):
    infer.model_gin_files(str(ckpt))
  (tmp_path / "config.gin").write_text("")   # a t5x MODEL_DIR
  assert infer.model_gin_files(str(ckpt)) == [str(tmp_path / "config.gin")]
  (tmp_path / "model.gin").write_text("")    # pad_jax.convert_hf's output
  assert infer.model_gin_files(str(ckpt) + "/") == [
      str(tmp_path / "model.gin")]


@pytest.fixture(scope="module")
def t5x_model_dir(tmp_path_factory):
  """(MODEL_DIR, env) of a 2-step `python -m t5x.train` run of models/tiny.gin."""
  tmp = tmp_path_factory.mktemp("t5x_run")
  env = tl.subprocess_env(tl.write_program_dataset(tmp / "programs.jsonl",
                                                   n=40))
  model_dir = tmp / "run"
  result = tl.run(tl.train_argv(model_dir, 2, 2, extra=[
      "--gin.EVAL_STEPS=1", "--gin.EVALUATOR_NUM_EXAMPLES=2"]), env)
  assert result.returncode == 0, result.stderr[-4000:]
  return model_dir, env


def test_decodes_a_t5x_model_dir_from_its_config_gin(t5x_model_dir, tmp_path):
  """Only --checkpoint_dir: the model comes from MODEL_DIR/config.gin."""
  model_dir, env = t5x_model_dir
  assert (model_dir / "config.gin").is_file()
  assert not (model_dir / "model.gin").exists()
  inputs = _write_inputs(tmp_path / "in.jsonl", QUESTIONS[:2])
  out = tmp_path / "out.jsonl"
  proc = _infer_cli(f"--checkpoint_dir={model_dir}", f"--input={inputs}",
                    f"--output={out}", "--max_decode_length=8",
                    "--batch_size=2", env=env)
  assert proc.returncode == 0, proc.stderr[-4000:]
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  assert summary["checkpoint"] == str(model_dir / "checkpoint_2")
  assert summary["decoded"] == 2
  rows = _read(out)
  assert [r["id"] for r in rows] == ["q0", "q1"]
  # models/tiny.gin's 1024-id demo vocabulary, as config.gin says.
  assert all(0 <= t < 1024 for r in rows for t in r["tokens"])


def test_settings_flags_are_checked_before_any_work(tmp_path):
  inputs = _write_inputs(tmp_path / "in.jsonl")
  common = ["--checkpoint_dir=/nonexistent", f"--input={inputs}",
            f"--output={tmp_path / 'out.jsonl'}"]
  cases = ((["--refine_rounds=-1"], "--refine_rounds"),
           (["--refine_rounds=1", "--decode=sample", "--num_decodes=2"], "--refine_rounds"),
           (["--num_decodes=4"], "--num_decodes"),
           (["--decode=beam", "--beam_size=2", "--num_decodes=3"], "--num_decodes"))
  # Each case, through the command's own flags and check (in process) ...
  for args, flag in cases:
    values = flags.FlagValues()
    infer_cli.define_flags(values)
    values(["infer", *common, *args])
    with pytest.raises(ConfigError, match=f"^{flag}:"):
      infer_cli.settings_from_flags(values).validate(prefix="--")
  # ... and one through the command: one line, exit 2, no output written.
  proc = _infer_cli(*common, *cases[0][0])
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1].startswith("error: --refine_rounds:")
  assert not (tmp_path / "out.jsonl").exists()
  assert "--refine_rounds" in _infer_cli("--help").stdout
