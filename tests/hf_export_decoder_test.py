"""Decoder-only t5x -> Hugging Face export (`hf_export_decoder`, `hf_export`).

Random-weight tiny HF models with a tokenizer (`hf_tokenizer_vocab_test`'s)
are imported with `convert_any`, exported with `hf_export.export`, and
imported again: the parameters are bit-identical, the exported tensors are
the original's, and transformers loads the export (model and tokenizer) and
greedy-decodes the original's ids. Llama untied, whose seqio pad is its BOS;
Qwen2 tied with q/k/v biases, whose seqio pad is a new id (rows padded on
import, dropped on export while untrained, kept once trained).

A tiny decoder student (`models/tiny_decoder.gin`, the demo vocabulary)
trained a few steps by `t5x.train` and exported by `python -m
pad_jax.export_hf` decodes the same greedy ids in transformers as in
`pad_jax.infer`'s decoder, from the exported tokenizer's prompt (`<s>`, the
start row, + the question and a newline); its model card describes the
decoder-only network and its usage snippet runs as written.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import types

import flax
import numpy as np
import pytest

import decoder_testlib
from hf_tokenizer_vocab_test import make_tokenizer_dir
from pad_jax.data import synthetic
from pad_jax.decoding import decoder as decoder_lib
from pad_jax.decoding.settings import DecodeSettings
from pad_jax.student import decoder_network
from pad_jax.student import hf_export
from pad_jax.student import hf_export_decoder
from pad_jax.student import hf_import
from pad_jax.student import hf_import_decoder
from pad_jax.student import hf_model_card
from tasks import decoder_tasks
import train_testlib as tl

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXTS = ("How many apples does Tom have?", "def solution():\n    return 12\n")
COMMON = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, head_dim=8,
              max_position_embeddings=128, initializer_range=0.25)


def _hf_dir(tmp_path, flavour, config_cls, hf_rows=None, **overrides):
  """A random HF causal LM with `flavour`'s tokenizer files; (model, dir)."""
  tok_dir = make_tokenizer_dir(tmp_path / f"tok_{flavour}", flavour)
  tok = transformers.AutoTokenizer.from_pretrained(str(tok_dir))
  torch.manual_seed(0)
  config = config_cls(**COMMON, vocab_size=hf_rows or len(tok),
                      bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, **overrides)
  model = transformers.AutoModelForCausalLM.from_config(
      config, dtype=torch.float32).eval()
  with torch.no_grad():
    for name, value in model.named_parameters():
      if name.endswith(".bias"):
        value.normal_(0.0, 0.5)
  path = tmp_path / flavour
  model.save_pretrained(str(path))
  for name in os.listdir(tok_dir):
    shutil.copy(tok_dir / name, path / name)
  return model, str(path)


def _imported(hf_dir):
  config = hf_import.read_hf_config(hf_dir)
  vocab = hf_import_decoder.tokenizer_vocabulary(hf_dir)
  params = hf_import_decoder.convert_params(
      config, hf_import.read_hf_weights(hf_dir), vocab)
  return flax.traverse_util.flatten_dict(params), vocab


def _greedy(model_dir, model=None):
  tok = transformers.AutoTokenizer.from_pretrained(model_dir)
  model = model or transformers.AutoModelForCausalLM.from_pretrained(
      model_dir, dtype=torch.float32).eval()
  out = []
  for text in TEXTS:
    ids = tok(text, add_special_tokens=False).input_ids
    if tok.bos_token_id is not None:
      ids = [tok.bos_token_id] + ids
    ids = torch.tensor([ids])
    with torch.no_grad():
      out.append(model.generate(
          input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
          num_beams=1, max_new_tokens=12, eos_token_id=None,
          pad_token_id=0).numpy()[0].tolist())
  return out


def _round_trip(tmp_path, hf_model, hf_dir):
  """import -> export -> import; returns the exported directory."""
  ckpt_dir = str(tmp_path / "ckpt")
  checkpoint = hf_import_decoder.convert_any(hf_dir, ckpt_dir)
  out = str(tmp_path / "exported")
  summary = hf_export.export(checkpoint, [os.path.join(ckpt_dir, "model.gin")],
                             out)
  assert "tokenizer.json" in summary["files"]
  first, _ = _imported(hf_dir)
  again, _ = _imported(out)
  assert set(first) == set(again)
  for key, value in first.items():
    np.testing.assert_array_equal(again[key], value, err_msg="/".join(key))
  # The export is the original model: same tensors, same greedy ids.
  want = hf_import.read_hf_weights(hf_dir)
  got = hf_import.read_hf_weights(out)
  if hf_model.config.tie_word_embeddings:  # save_pretrained may write it.
    want.pop("lm_head.weight", None)
  assert set(got) == set(want)
  for name, value in want.items():
    np.testing.assert_array_equal(got[name], value, err_msg=name)
  assert _greedy(out) == _greedy(hf_dir, hf_model)
  return out


def test_llama_untied_export_round_trip(tmp_path):
  hf_model, hf_dir = _hf_dir(tmp_path, "smollm_instruct",
                             transformers.LlamaConfig, hf_rows=384)
  out = _round_trip(tmp_path, hf_model, hf_dir)
  config = json.load(open(os.path.join(out, "config.json")))
  assert config["architectures"] == ["LlamaForCausalLM"]
  assert config["vocab_size"] == 384 and not config["tie_word_embeddings"]
  tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
  assert (config["bos_token_id"], config["eos_token_id"]) == (
      tok.bos_token_id, tok.eos_token_id)
  generation = json.load(open(os.path.join(out, "generation_config.json")))
  assert generation["eos_token_id"] == tok.eos_token_id
  # The card's prompt starts with seqio's pad, which is this tokenizer's BOS.
  _, vocab = _imported(hf_dir)
  assert vocab.pad_hf_id == tok.bos_token_id
  card = open(os.path.join(out, "README.md")).read()
  assert f"the start id {tok.bos_token_id} (the BOS)" in card


def test_qwen2_tied_bias_new_pad_id_round_trip(tmp_path):
  hf_model, hf_dir = _hf_dir(tmp_path, "qwen_base", transformers.Qwen2Config,
                             tie_word_embeddings=True)
  size = hf_model.config.vocab_size
  out = _round_trip(tmp_path, hf_model, hf_dir)
  rows = hf_import_decoder.ROW_MULTIPLE * (size // 128 + 1)
  gin_text = open(tmp_path / "ckpt" / "model.gin").read()
  assert f"vocab_size = {rows}" in gin_text  # Padded on import, for the new
  config = json.load(open(os.path.join(out, "config.json")))
  assert config["architectures"] == ["Qwen2ForCausalLM"]
  assert config["vocab_size"] == size  # pad id; dropped again on export.
  assert config["tie_word_embeddings"]
  card = open(os.path.join(out, "README.md")).read()
  assert "no start id (pad-jax's start row was not exported)" in card


def test_trained_pad_row_is_kept(tmp_path):
  """Once the new pad row (the decoder's start token) has trained, the
  export keeps every row, and still imports back bit-identically."""
  hf_model, hf_dir = _hf_dir(tmp_path, "qwen_base", transformers.Qwen2Config,
                             tie_word_embeddings=True)
  size = hf_model.config.vocab_size
  flat, vocab = _imported(hf_dir)
  flat[("token_embedder", "embedding")][0] = 0.5  # "Trained".
  params = flax.traverse_util.unflatten_dict(flat)
  cfg = hf_import_decoder.network_config(hf_import.read_hf_config(hf_dir))
  cfg["vocab_size"] = flat[("token_embedder", "embedding")].shape[0]
  cfg = decoder_network.DecoderConfig(**cfg)
  hf = hf_export.export_decoder(cfg, params, vocab)
  assert hf.config["vocab_size"] == cfg.vocab_size > size
  np.testing.assert_array_equal(
      hf.tensors["model.embed_tokens.weight"][vocab.pad_hf_id], 0.5)
  # A prompt starts with that row, which no text encodes to (the card says so).
  assert hf_export_decoder.start_id(vocab, hf.config) == size
  hf_export._check_round_trip(hf_export.DECODER_FAMILY, hf, params, vocab)  # pylint: disable=protected-access


def test_out_bias_without_qkv_bias_is_refused():
  cfg = types.SimpleNamespace(qkv_bias=False, out_bias=True)
  with pytest.raises(hf_import.ConversionError, match="field 'out_bias'"):
    hf_export_decoder._architecture(cfg)  # pylint: disable=protected-access


# ------------------------------------------------------------------------------
# A t5x-trained decoder student, exported by the command.
# ------------------------------------------------------------------------------
STEPS = decoder_testlib.STEPS
MAX_DECODE = 128  # the run's target length: generation_config's max_new_tokens
CARD_QUESTION = "Tom has 3 apples and buys 5 more. How many apples?"


@pytest.fixture(scope="module")
def trained(tiny_decoder_student):
  """MODEL_DIR of a short t5x.train run of models/tiny_decoder.gin (conftest)."""
  return tiny_decoder_student[0]


def _usage_snippet(card, out):
  """The model card's Python usage block, for the exported directory."""
  block = re.search(r"## Usage\n\n```python\n(.*?)```", card, re.S).group(1)
  return block.replace("PATH_OR_HUB_ID", str(out))


def test_student_decodes_the_same_in_transformers(trained, tmp_path):
  out = tmp_path / "hf"
  proc = subprocess.run(
      [sys.executable, "-m", "pad_jax.export_hf", f"--checkpoint_dir={trained}",
       f"--out_dir={out}"], capture_output=True, text=True, timeout=600,
      check=False, cwd=tl.REPO)
  assert proc.returncode == 0, proc.stderr[-4000:]
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  assert summary["checkpoint"] == str(trained / f"checkpoint_{STEPS}")
  assert summary["run_dir"] is None
  config = json.load(open(out / "config.json"))
  assert config["architectures"] == ["LlamaForCausalLM"]
  # <s> starts the prompt; EOS pads (so generate never masks the <s>).
  assert (config["bos_token_id"], config["eos_token_id"],
          config["pad_token_id"]) == (1, 2, 2)
  generation = json.load(open(out / "generation_config.json"))
  assert generation == {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
                        "max_new_tokens": MAX_DECODE}

  questions = [CARD_QUESTION] + [
      p.question for p in synthetic.generate("test", 3, seed=1)]
  decoder = decoder_lib.Decoder(
      str(trained), options=DecodeSettings(max_decode_length=MAX_DECODE,
                                           max_input_length=64, batch_size=4))
  ours = decoder.decode_batch(questions)
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
  model = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
  # pad-jax's prompt starts with seqio id 0 (t5x's decoder start); the
  # export's <s> (HF id 1) is that row.
  batch = decoder.batch(questions)["decoder_input_tokens"]
  assert (batch[:len(questions), 0] == 0).all()
  np.testing.assert_array_equal(
      model.model.embed_tokens.weight[1].detach().numpy(),
      np.asarray(decoder.params["token_embedder"]["embedding"][0]))
  for question, row in zip(questions, ours):
    ids = tokenizer(decoder_tasks.prompt_text(question))["input_ids"]
    assert ids == [tokenizer.bos_token_id] + decoder.encode(question)
    assert tokenizer.bos_token_id == 1 and 1 not in ids[1:]
    inputs = torch.tensor([ids])
    with torch.no_grad():
      hf = model.generate(inputs, attention_mask=torch.ones_like(inputs),
                          do_sample=False, num_beams=1)[0, len(ids):].tolist()
    hf = hf[:hf.index(2) + 1] if 2 in hf else hf
    assert row["tokens"] == hf
    assert not {0, 1} & set(hf)  # the two ids the export swaps
    assert tokenizer.decode([t for t in hf if t > 2]) == row["prediction"]
  assert all(r["prediction"].startswith("def solution():") for r in ours), ours

  card = (out / "README.md").read_text()
  num_params = sum(v.size for v in hf_import.read_hf_weights(str(out)).values())
  assert "pipeline_tag: text-generation" in card
  assert (f"- Family: llama decoder-only (LlamaForCausalLM), {num_params:,} "
          "parameters: 2 layers, hidden size 128, 8 query / 4 key-value heads "
          "of 16, SwiGLU MLP 256, RoPE theta 10000.0, vocabulary 1024, output "
          "layer untied.") in card
  assert "Load with: `transformers.AutoModelForCausalLM`" in card
  assert "Base model: none: trained from scratch" in card
  assert "`solution()` returns the answer" in card
  # The usage snippet runs as written and writes pad-jax's program.
  namespace = {}
  exec(_usage_snippet(card, out), namespace)  # pylint: disable=exec-used
  assert namespace["ids"] == tokenizer(CARD_QUESTION + "\n")["input_ids"]
  assert namespace["program"] == ours[0]["prediction"]

  # Imported back (`python -m pad_jax.convert_hf`'s importer): the same
  # parameters, in seqio order (<s> is the tokenizer's seqio pad again).
  vocabulary = hf_import_decoder.tokenizer_vocabulary(str(out))
  assert vocabulary.pad_hf_id == 1
  back = flax.traverse_util.flatten_dict(hf_import_decoder.convert_params(
      hf_import.read_hf_config(str(out)), hf_import.read_hf_weights(str(out)),
      vocabulary))
  want = flax.traverse_util.flatten_dict(decoder.params)
  assert set(back) == set(want)
  for key, value in want.items():
    np.testing.assert_array_equal(back[key], value, err_msg="/".join(key))


def _card(start=None, **config):
  facts = hf_model_card.CardFacts(
      checkpoint="/m/checkpoint_7", family="qwen2 decoder-only "
      "(Qwen2ForCausalLM)", hf_config=config, num_params=1234,
      tokenizer="tok", command="cmd", base_model=None, base_model_via=None,
      run=None, max_new_tokens=None, start_id=start)
  return hf_model_card.render(facts)


def test_decoder_card_names_the_network_and_the_start_id():
  config = dict(architectures=["Qwen2ForCausalLM"], num_hidden_layers=24,
                hidden_size=896, num_attention_heads=14, num_key_value_heads=2,
                head_dim=64, intermediate_size=4864, vocab_size=151936,
                rope_parameters={"rope_theta": 1e6}, tie_word_embeddings=True,
                bos_token_id=None)
  card = _card(**config, start=151665)
  assert ("1,234 parameters: 24 layers, hidden size 896, 14 query / 2 "
          "key-value heads of 64, SwiGLU MLP 4864, RoPE theta 1000000.0, "
          "vocabulary 151936, output layer tied to the embedding.") in card
  assert "AutoModelForCausalLM.from_pretrained" in card
  # A start row the tokenizer never emits: the prompt names it.
  assert "# The prompt: the start id 151665, then the question" in card
  assert ('ids = [151665] + tokenizer(question + "\\n", '
          'add_special_tokens=False).input_ids') in card
  assert "Seq2Seq" not in card and "d_model" not in card
  card = _card(**config)
  assert "no start id (pad-jax's start row was not exported)" in card
  assert ('ids = tokenizer(question + "\\n", add_special_tokens=False)'
          '.input_ids') in card
