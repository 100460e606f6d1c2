"""t5x -> Hugging Face export (`pad_jax.student.hf_export`, `hf_model_card`).

1. import -> export -> import is bit-identical, for tied (v1.0) and untied
   (v1.1) output layers, ReLU and gated feed-forwards;
2. a tiny t5x student (`models/tiny.gin`: t5x's network, untied, gated-GELU,
   the digit-splitting demo vocabulary) decodes the same greedy ids in
   transformers as in `pad_jax.infer`'s decoder, from the exported tokenizer's
   ids (equal to the seqio vocabulary's);
3. the model card inside a pipeline run directory, and the command's
   `--help` and one-line errors.
"""

import json
import os
import subprocess
import sys
import types

import flax
import jax
import numpy as np
import pytest

from pad_jax.decoding import decoder as decoder_lib
from pad_jax.decoding.settings import DecodeSettings
from pad_jax.student import hf_export
from pad_jax.student import hf_import
from pad_jax.student import hf_model_card
from pad_jax.student import model_gin
from pad_jax.student import network as pad_network
from pad_jax.student import vocab as vocab_lib

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUESTIONS = [
    "Tom has 3 apples and buys 15 more. How many apples does he have?",
    "A train travels 60 miles per hour for 2.5 hours. How far does it go?",
    "What is 12 times 7?",
]
MAX_DECODE = 12


def _hf_dir(tmp_path, name, untied_head=False, **overrides):
  """A random CodeT5-vocabulary T5 saved as Hugging Face files."""
  kwargs = dict(vocab_size=32100, d_model=32, d_kv=8, num_heads=4, d_ff=48,
                num_layers=2, num_decoder_layers=2, dropout_rate=0.0,
                pad_token_id=0, eos_token_id=2, bos_token_id=1,
                decoder_start_token_id=0)
  kwargs.update(overrides)
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(
      transformers.T5Config(**kwargs)).eval()
  path = str(tmp_path / name)
  model.save_pretrained(path)
  if untied_head:  # A transformers-4 v1.1 checkpoint: its own lm_head.
    state = safetensors_numpy.load_file(os.path.join(path, "model.safetensors"))
    state["lm_head.weight"] = np.random.RandomState(1).normal(
        size=state["shared.weight"].shape).astype(np.float32)
    safetensors_numpy.save_file(state, os.path.join(path, "model.safetensors"),
                                metadata={"format": "pt"})
    config_path = os.path.join(path, "config.json")
    config = json.load(open(config_path))
    config.update(tie_word_embeddings=False, scale_decoder_outputs=False)
    json.dump(config, open(config_path, "w"))
  return path


def _restore(checkpoint, gin_file):
  model, _ = hf_export.load_model([gin_file])
  return flax.traverse_util.flatten_dict(hf_export.restore_params(model, checkpoint))


def _logits(model_dir):
  model = transformers.AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
  ids = torch.tensor([[1, 40, 50, 60, 70, 2]])
  with torch.no_grad():
    return model(input_ids=ids, decoder_input_ids=torch.tensor([[0, 9, 8]])).logits


@pytest.mark.parametrize("name,untied_head,overrides", [
    ("v10_relu_tied", False, {}),
    ("v11_gated_gelu_untied", True, {"feed_forward_proj": "gated-gelu"}),
    # transformers 5's save of a v1.1 config: tied to the embedding, unscaled.
    ("gated_silu_tied_unscaled", False,
     {"feed_forward_proj": "gated-silu", "tie_word_embeddings": False}),
])
def test_import_export_import_is_bit_identical(tmp_path, name, untied_head,
                                               overrides):
  hf_dir = _hf_dir(tmp_path, name, untied_head, **overrides)
  ckpt = hf_import.convert(hf_dir, str(tmp_path / "ckpt"))
  gin_file = str(tmp_path / "ckpt" / "model.gin")
  out = str(tmp_path / "export")
  summary = hf_export.export(ckpt, [gin_file], out)
  assert summary["base_model"] == hf_dir  # from convert_hf's model.gin

  original = safetensors_numpy.load_file(os.path.join(hf_dir, "model.safetensors"))
  exported = safetensors_numpy.load_file(os.path.join(out, "model.safetensors"))
  if name == "gated_silu_tied_unscaled":
    # Written untied (what transformers 4 also reads): the head is a copy.
    assert np.array_equal(exported.pop("lm_head.weight"), original["shared.weight"])
  assert sorted(exported) == sorted(original)
  for key, value in original.items():
    assert exported[key].dtype == value.dtype
    assert np.array_equal(exported[key], value), key
  config = json.load(open(os.path.join(out, "config.json")))
  assert config["architectures"] == ["T5ForConditionalGeneration"]
  assert config["tie_word_embeddings"] is (name == "v10_relu_tied")
  # The same network (dropout is the model file's, not the checkpoint's).
  assert dict(hf_import.network_config(config), dropout_rate=0) == dict(
      hf_import.network_config(hf_import.read_hf_config(hf_dir)), dropout_rate=0)
  # transformers computes the same logits from both directories.
  assert torch.equal(_logits(out), _logits(hf_dir))

  again = hf_import.convert(out, str(tmp_path / "again"))
  first, second = _restore(ckpt, gin_file), _restore(
      again, str(tmp_path / "again" / "model.gin"))
  assert sorted(first) == sorted(second)
  for key in first:
    assert np.array_equal(np.asarray(first[key]), np.asarray(second[key])), key

  if name == "v10_relu_tied":  # The CodeT5 tokenizer of convert_hf's model.gin.
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert type(tokenizer).__name__ == "RobertaTokenizer"
    vocabulary = vocab_lib.CodeT5Vocabulary()
    for question in QUESTIONS:
      assert tokenizer(question)["input_ids"] == vocab_lib.format_input(
          question, vocabulary)
    assert len(tokenizer) == 32100
    assert tokenizer.convert_tokens_to_ids("<extra_id_0>") == 32099


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory):
  """A random `models/tiny.gin` checkpoint inside a fake pipeline run dir."""
  run = tmp_path_factory.mktemp("run")
  model_dir = run / "train" / "model"  # created by write_checkpoint
  model = model_gin.load_model_from_gin(["models/tiny.gin"], with_optimizer=False)
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  params = model.get_initial_variables(jax.random.PRNGKey(3), shapes)["params"]
  checkpoint = hf_import.write_checkpoint(model, params, str(model_dir), step=5)
  (model_dir / "model.gin").write_text("include 'models/tiny.gin'\n")
  return run, checkpoint


def _fake_run_records(run, checkpoint):
  def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
  write(run / "train" / "STARTED.json", {"config": {}, "upstream": {}})
  write(run / "synthesize" / "DONE.json", {"config": {"synthesize": {
      "teacher": "openai", "model": "gpt-4o-mini", "benchmark": "gsm8k",
      "split": "train"}}})
  write(run / "train" / "DONE.json", {"summary": {
      "examples": {"synthetic": 900, "teacher": 120},
      "questions": {"synthetic": 900, "teacher": 80}}})
  write(run / "decode" / "DONE.json", {
      "config": {"decode": {"max_decode_length": MAX_DECODE}},
      "summary": {"checkpoint_dir": checkpoint}})
  write(run / "report.json", {
      "programs_kept_by_source": {"synthetic": 900, "teacher": 120},
      "student_status_counts": {"gsm8k": {}, "svamp": {}},
      "gsm8k_n": 100, "gsm8k_accuracy": 0.125, "gsm8k_runnable_rate": 0.5,
      "svamp_n": 50, "svamp_accuracy": 0.25, "svamp_runnable_rate": 0.75})


def _export_cli(*flags):
  return subprocess.run([sys.executable, "-m", "pad_jax.export_hf", *flags],
                        capture_output=True, text=True, timeout=600,
                        check=False, cwd=REPO)


def test_student_decodes_the_same_in_transformers(tiny_student, tmp_path):
  run, checkpoint = tiny_student
  _fake_run_records(run, checkpoint)
  out = tmp_path / "hf"
  proc = _export_cli(f"--checkpoint_dir={run / 'train' / 'model'}",
                     f"--out_dir={out}")
  assert proc.returncode == 0, proc.stderr[-4000:]
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  assert summary["checkpoint"] == checkpoint
  assert summary["run_dir"] == str(run)
  for name in ("config.json", "model.safetensors", "generation_config.json",
               "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.json", "merges.txt",
               "README.md"):
    assert (out / name).is_file(), name
  generation = json.load(open(out / "generation_config.json"))
  assert generation == {"decoder_start_token_id": 0, "eos_token_id": 2,
                        "pad_token_id": 0, "max_new_tokens": MAX_DECODE}

  decoder = decoder_lib.Decoder(
      checkpoint, ["models/tiny.gin"],
      DecodeSettings(max_decode_length=MAX_DECODE, batch_size=4))
  ours = decoder.decode_batch(QUESTIONS)
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
  model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(out)).eval()
  for question, row in zip(QUESTIONS, ours):
    ids = tokenizer(question)["input_ids"]
    assert ids == decoder.encode(question)  # digits split, <s> ... </s>
    with torch.no_grad():
      hf = model.generate(input_ids=torch.tensor([ids]), do_sample=False,
                          num_beams=1)[0, 1:].tolist()
    hf = hf[:hf.index(2) + 1] if 2 in hf else hf
    assert row["tokens"] == hf
    # pad-jax's text drops <pad>, <s>, </s> and keeps <unk>, <mask> visible.
    assert tokenizer.decode([t for t in hf if t > 2]) == row["prediction"]
  assert len(set(ours[0]["tokens"])) > 1  # not a degenerate decode

  card = (out / "README.md").read_text()
  assert "Base model: none: trained from scratch" in card
  assert "openai (model gpt-4o-mini, on gsm8k train)" in card
  assert "| teacher | 120 | 80 |" in card
  assert "| gsm8k | 100 | 12.5% | 50.0% |" in card
  assert "| svamp | 50 | 25.0% | 75.0% |" in card
  assert "python -m pad_jax.export_hf --checkpoint_dir=" in card
  assert "not of the exported checkpoint" not in card


def test_card_outside_a_run_says_what_is_unknown(tiny_student, tmp_path):
  _, checkpoint = tiny_student
  card_args = dict(hf_config={"d_model": 8}, family="T5", tokenizer="none",
                   command="cmd", num_params=10)
  facts = hf_model_card.gather(str(tmp_path / "elsewhere" / "checkpoint_5"),
                               ["models/tiny.gin"], **card_args)
  assert facts.run is None and facts.base_model is None
  card = hf_model_card.render(facts)
  assert "Unknown: the checkpoint is not inside a pad-jax pipeline run" in card
  assert "trained from scratch" in card
  # A MODEL_DIR fine-tuned from a converted checkpoint names the hub model.
  hf = tmp_path / "models--Salesforce--codet5-small" / "snapshots" / "abc"
  converted = tmp_path / "init"
  converted.mkdir()
  (converted / "model.gin").write_text(
      hf_import.MODEL_GIN_TEMPLATE.format(hf_dir=hf, fields=""))
  config = tmp_path / "config.gin"
  config.write_text(f"INITIAL_CHECKPOINT_PATH = '{converted}/checkpoint_0'\n"
                    "TASK_FEATURE_LENGTHS = {'inputs': 64, 'targets': 96}\n")
  facts = hf_model_card.gather(checkpoint, [str(config)], **card_args)
  assert facts.base_model == "Salesforce/codet5-small"
  assert "base_model: Salesforce/codet5-small" in hf_model_card.render(facts)


def test_demo_vocabulary_tokenizer_round_trip(tmp_path):
  vocabulary = vocab_lib.CodeT5Vocabulary(
      os.path.join(REPO, "pad_jax", "data", "demo_vocab"), extra_ids=0)
  files, text = hf_export.tokenizer_files(vocabulary)
  assert "digits split" in text
  for name, content in files.items():
    (tmp_path / name).write_text(
        content if isinstance(content, str) else json.dumps(content))
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  texts = QUESTIONS + ["x = 12345 * 0.75\nreturn round(x, 2)  # é 😀"]
  for t in texts:
    assert tokenizer(t, add_special_tokens=False)["input_ids"] == vocabulary.encode(t)
    assert tokenizer.decode(vocabulary.encode(t)) == vocabulary.decode(
        vocabulary.encode(t))
  # The export is also a pad-jax vocabulary directory.
  assert vocab_lib.CodeT5Vocabulary(str(tmp_path), extra_ids=0) == vocabulary


def test_models_without_an_exporter_are_refused():
  model = types.SimpleNamespace(module=types.SimpleNamespace(config=object()))
  with pytest.raises(hf_export.ExportError,
                     match="model.gin: MODEL's network config is builtins.object"):
    hf_export.family_for(model, source="model.gin")
  with pytest.raises(hf_export.ExportError, match="'mlp_activations'"):
    hf_export._feed_forward_proj(("linear", "gelu"))  # pylint: disable=protected-access


def test_an_export_that_does_not_import_back_exactly_is_refused(tmp_path):
  hf_dir = _hf_dir(tmp_path, "small", vocab_size=64)
  config = hf_import.read_hf_config(hf_dir)
  params = hf_import.convert_params(config, hf_import.read_hf_weights(hf_dir))
  cfg = pad_network.T5Config(**hf_import.network_config(config))
  hf = hf_export.export_t5(cfg, params, types.SimpleNamespace(eos_id=2))
  hf_export._check_round_trip(hf_export.T5_FAMILY, hf, params)  # pylint: disable=protected-access
  name = "decoder.final_layer_norm.weight"
  hf.tensors[name] = hf.tensors[name] + 1
  with pytest.raises(hf_export.ExportError, match="params: 'decoder/"
                     "decoder_norm/scale' does not survive the round trip"):
    hf_export._check_round_trip(hf_export.T5_FAMILY, hf, params)  # pylint: disable=protected-access


def test_cli_help_and_one_line_errors(tmp_path):
  proc = _export_cli("--help")
  assert proc.returncode in (0, 1), proc.stderr[-2000:]  # absl's --help status
  assert "--checkpoint_dir" in proc.stdout and "--out_dir" in proc.stdout
  assert "python -m pad_jax.export_hf --checkpoint_dir=" in proc.stdout
  missing = tmp_path / "missing"
  proc = _export_cli(f"--checkpoint_dir={missing}", f"--out_dir={tmp_path / 'o'}")
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: {missing}: checkpoint directory not found")
  proc = _export_cli(f"--checkpoint_dir={tmp_path}", f"--out_dir={tmp_path / 'o'}")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f"error: {tmp_path}: no checkpoint_<step> directory in it")
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "o").exists()
