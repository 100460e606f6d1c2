"""Tests for pad_jax.student.hf_tokenizer_vocab: parity with transformers, id swap, TF path.

The tokenizers are built here (a byte-level BPE trained on a few strings)
with the layouts of the real ones: Qwen2.5 (Qwen2 pre-tokenizer, id 0 is
`!`, specials after the BPE tokens, pad == eos) and SmolLM2 (GPT-2
pre-tokenizer, `<|endoftext|>` is id 0), base and instruct special tokens.
"""

import copy
import json
import pathlib
import pickle
import re

import gin
import numpy as np
import pytest
import seqio
import tensorflow as tf
import tokenizers
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers

from pad_jax.student import hf_tokenizer_vocab as hf_vocab

transformers = pytest.importorskip("transformers")

QWEN_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
              r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEXTS = [
    "Tom has 12 apples and buys 35 more! How many apples does he have now?",
    "A train goes 60 km/h for 2.5 hours.  How far?\nAnswer in km.",
    "def solution():\n    apples = 12\n    bought = 35\n    return apples + bought\n",
    "def solution():\n\tx = 1_000 / 7.25\n\tif x != 0:\n\t\treturn x\n\treturn -1\n",
    "  leading and trailing spaces  \n\n\n",
    "a  b   c\t\td!!",
    "",
]

# flavour -> (tokenizer.json builder, tokenizer_config.json, generation_config.json)
FLAVOURS = {
    "qwen_base": ("qwen", {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None,
                           "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                           "unk_token": None}, None),
    "qwen_instruct": ("qwen", {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None,
                               "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                               "unk_token": None},
                      {"eos_token_id": ["<|im_end|>", "<|endoftext|>"],
                       "bos_token_id": "<|endoftext|>"}),
    "smollm_base": ("smollm", {"tokenizer_class": "GPT2Tokenizer",
                               "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                               "unk_token": "<|endoftext|>"}, None),
    "smollm_instruct": ("smollm", {"tokenizer_class": "PreTrainedTokenizerFast",
                                   "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                                   "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>"},
                        None),
}


def _corpus():
  return TEXTS * 20 + ["solution return apples bought how many"] * 20


def _build(kind: str) -> tokenizers.Tokenizer:
  """A byte-level BPE with the real tokenizer's pipeline and special-token ids."""
  tokenizer = tokenizers.Tokenizer(models.BPE())
  if kind == "qwen":
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  else:
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=320, special_tokens=SPECIALS if kind == "smollm" else [],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  tokenizer.train_from_iterator(_corpus(), trainer=trainer)
  if kind == "qwen":  # Qwen's specials follow the BPE tokens.
    tokenizer.add_special_tokens(SPECIALS)
  return tokenizer


def make_tokenizer_dir(directory: pathlib.Path, flavour: str) -> pathlib.Path:
  """Writes tokenizer.json, tokenizer_config.json (and generation_config.json)."""
  kind, config, generation = FLAVOURS[flavour]
  tokenizer = _build(kind)
  directory.mkdir(parents=True, exist_ok=True)
  tokenizer.save(str(directory / "tokenizer.json"))
  (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
  if generation:
    ids = {k: ([tokenizer.token_to_id(t) for t in v] if isinstance(v, list)
               else tokenizer.token_to_id(v)) for k, v in generation.items()}
    (directory / "generation_config.json").write_text(json.dumps(ids))
  return directory


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("hf_tokenizers")
  return {f: make_tokenizer_dir(root / f, f) for f in FLAVOURS}


@pytest.fixture(scope="module")
def hf(dirs):
  return {f: transformers.AutoTokenizer.from_pretrained(str(d)) for f, d in dirs.items()}


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_ids_and_specials_match_transformers(dirs, hf, flavour):
  vocab = hf_vocab.HFTokenizerVocabulary(str(dirs[flavour]))
  tok = hf[flavour]
  for text in TEXTS:
    want = tok(text, add_special_tokens=False).input_ids
    assert vocab.to_hf_ids(vocab.encode(text)) == want, text
    assert vocab.encode(text) == vocab.from_hf_ids(want)
  assert [vocab.to_hf_ids(ids) for ids in vocab.encode_batch(TEXTS)] == [
      tok(t, add_special_tokens=False).input_ids for t in TEXTS]
  assert vocab.hf_eos_id == tok.eos_token_id
  assert vocab.hf_bos_id == tok.bos_token_id
  assert vocab.hf_pad_id == (tok.eos_token_id if tok.pad_token_id is None
                             else tok.pad_token_id)
  assert vocab.vocab_size >= len(tok)


def test_seqio_pad_choice(dirs, hf):
  """seqio id 0 is a non-EOS special token, or a new id; EOS is never 0."""
  endoftext = hf["qwen_base"].convert_tokens_to_ids("<|endoftext|>")
  size = len(hf["qwen_base"])
  qwen_base = hf_vocab.HFTokenizerVocabulary(str(dirs["qwen_base"]))
  # pad == eos, no BOS: a new id; HF id 0 (`!`) moves to it.
  assert (qwen_base.pad_hf_id, qwen_base.vocab_size) == (size, size + 1)
  assert qwen_base.eos_id == endoftext
  assert qwen_base.encode("!") == [size]
  qwen_instruct = hf_vocab.HFTokenizerVocabulary(str(dirs["qwen_instruct"]))
  # pad `<|endoftext|>` differs from eos `<|im_end|>`: it becomes seqio id 0.
  assert (qwen_instruct.pad_hf_id, qwen_instruct.vocab_size) == (endoftext, size)
  assert qwen_instruct.eos_id == endoftext + 2
  assert qwen_instruct.bos_id is None  # tokenizer_config's null wins over generation_config.
  assert qwen_instruct.encode("!") == [endoftext]
  smollm_base = hf_vocab.HFTokenizerVocabulary(str(dirs["smollm_base"]))
  # eos is HF id 0: it moves to the new id, so the program's EOS gets a loss.
  smollm_size = len(hf["smollm_base"])
  assert (smollm_base.hf_eos_id, smollm_base.eos_id, smollm_base.pad_hf_id) == (
      0, smollm_size, smollm_size)
  assert smollm_base.bos_id == smollm_base.eos_id == smollm_base.unk_id
  smollm_instruct = hf_vocab.HFTokenizerVocabulary(str(dirs["smollm_instruct"]))
  # pad == eos `<|im_end|>`: BOS `<|im_start|>` (id 1) is seqio's 0 and decoder start.
  assert (smollm_instruct.pad_hf_id, smollm_instruct.bos_id, smollm_instruct.eos_id) == (1, 0, 2)
  assert smollm_instruct.vocab_size == smollm_size
  override = hf_vocab.HFTokenizerVocabulary(str(dirs["qwen_base"]), pad_token="<|im_start|>")
  assert override.pad_hf_id == endoftext + 1 and override.vocab_size == size
  for vocab in (qwen_base, qwen_instruct, smollm_base, smollm_instruct, override):
    assert vocab.pad_id == 0 and vocab.eos_id != 0
    assert all(0 not in ids for ids in vocab.encode_batch(TEXTS))


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_round_trip_and_decode_layout(dirs, flavour):
  vocab = hf_vocab.HFTokenizerVocabulary(str(dirs[flavour]))
  for text in TEXTS:
    ids = list(vocab.encode(text))
    assert vocab.decode(ids) == text
    # Decoding stops at EOS and skips pad (seqio pads predictions with 0).
    assert vocab.decode(ids + [vocab.eos_id] + ids[:3] + [0, 0]) == text
  assert vocab.decode([0] + list(vocab.encode("x = 1")) + [0]) == "x = 1"
  # Other special tokens stay visible, as written.
  chat = "<|im_start|>user\nhi"
  if vocab.pad_hf_id != vocab.tokenizer.token_to_id("<|im_start|>"):
    assert vocab.decode(vocab.encode(chat)) == chat


@pytest.mark.parametrize("flavour", ["qwen_base", "smollm_instruct"])
def test_tf_matches_python(dirs, flavour):
  vocab = hf_vocab.HFTokenizerVocabulary(str(dirs[flavour]))
  texts = [t for t in TEXTS if t]
  for text in texts:
    assert vocab.encode_tf(tf.constant(text)).numpy().tolist() == list(vocab.encode(text))
  ragged = vocab.encode_tf(tf.constant(texts))
  assert ragged.to_list() == vocab.encode_batch(texts)
  padded = ragged.to_tensor(default_value=0)
  eos = tf.fill([len(texts), 1], vocab.eos_id)
  decoded = vocab.decode_tf(tf.concat([padded, eos, padded[:, :2]], axis=1))
  assert [d.decode("utf-8") for d in decoded.numpy()] == texts
  # Through seqio's tokenize preprocessor (what every task runs).
  ds = tf.data.Dataset.from_tensor_slices({"targets": texts})
  ds = seqio.preprocessors.tokenize(ds, {"targets": seqio.Feature(vocab)})
  assert [list(ex["targets"]) for ex in ds.as_numpy_iterator()] == vocab.encode_batch(texts)


def test_row_permutation_moves_embeddings_with_ids(dirs):
  vocab = hf_vocab.HFTokenizerVocabulary(str(dirs["qwen_base"]))
  rows = vocab.vocab_size + 7  # Checkpoints pad their vocabulary.
  hf_embedding = np.random.default_rng(0).normal(size=(rows, 4))
  perm = vocab.row_permutation(rows)
  seqio_embedding = hf_embedding[perm]
  np.testing.assert_array_equal(seqio_embedding[perm], hf_embedding)
  for text in TEXTS:
    seqio_ids = list(vocab.encode(text))
    np.testing.assert_array_equal(seqio_embedding[seqio_ids],
                                  hf_embedding[vocab.to_hf_ids(seqio_ids)])
  with pytest.raises(ValueError, match="tokenizer.json: a weight with"):
    vocab.row_permutation(vocab.vocab_size - 1)


def test_identity_pickle_and_gin(dirs, tmp_path):
  vocab = hf_vocab.HFTokenizerVocabulary(str(dirs["qwen_instruct"]))
  for other in (pickle.loads(pickle.dumps(vocab)), copy.deepcopy(vocab)):
    assert other == vocab and hash(other) == hash(vocab)
    assert other.encode(TEXTS[0]) == vocab.encode(TEXTS[0])
  # The same files elsewhere (or the tokenizer.json path) are equal.
  for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    (tmp_path / name).write_bytes((dirs["qwen_instruct"] / name).read_bytes())
  assert hf_vocab.HFTokenizerVocabulary(str(tmp_path / "tokenizer.json")) == vocab
  assert hf_vocab.HFTokenizerVocabulary(str(tmp_path), eos_token="<|endoftext|>",
                                        pad_token="<|im_start|>") != vocab
  assert hf_vocab.HFTokenizerVocabulary(str(dirs["qwen_base"])) != vocab
  gin.clear_config()
  try:
    gin.parse_config(f"""
        VOCAB = @pad_jax.student.hf_tokenizer_vocab.HFTokenizerVocabulary()
        pad_jax.student.hf_tokenizer_vocab.HFTokenizerVocabulary.tokenizer_json_path = '{tmp_path}'
    """)
    assert gin.query_parameter("%VOCAB").scoped_configurable_fn() == vocab
  finally:
    gin.clear_config()


def test_generation_config_fallback(dirs, tmp_path):
  (tmp_path / "tokenizer.json").write_bytes((dirs["qwen_instruct"] / "tokenizer.json").read_bytes())
  (tmp_path / "generation_config.json").write_bytes(
      (dirs["qwen_instruct"] / "generation_config.json").read_bytes())
  vocab = hf_vocab.HFTokenizerVocabulary(str(tmp_path))
  im_end = vocab.tokenizer.token_to_id("<|im_end|>")
  endoftext = vocab.tokenizer.token_to_id("<|endoftext|>")
  # No tokenizer_config: eos is generation_config's first stop id, BOS its bos.
  assert (vocab.hf_eos_id, vocab.hf_bos_id, vocab.pad_hf_id) == (im_end, endoftext, endoftext)


def test_errors_name_the_file(dirs, tmp_path):
  missing = hf_vocab.HFTokenizerVocabulary(str(tmp_path / "nowhere"))  # Reads nothing yet.
  assert "files unreadable" in repr(missing)
  with pytest.raises(FileNotFoundError) as e:
    missing.encode("x")
  assert str(e.value).startswith(str(tmp_path / "nowhere" / "tokenizer.json"))
  assert "\n" not in str(e.value)
  (tmp_path / "tokenizer.json").write_text("{not json")
  with pytest.raises(ValueError, match="tokenizer.json: not a tokenizers"):
    hf_vocab.HFTokenizerVocabulary(str(tmp_path)).encode("x")
  (tmp_path / "tokenizer.json").write_bytes((dirs["qwen_base"] / "tokenizer.json").read_bytes())
  with pytest.raises(ValueError, match="no eos_token in tokenizer_config.json"):
    hf_vocab.HFTokenizerVocabulary(str(tmp_path)).eos_id
  (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|eot|>"}))
  with pytest.raises(ValueError, match=r"tokenizer_config.json: field 'eos_token': '<\|eot\|>'"):
    hf_vocab.HFTokenizerVocabulary(str(tmp_path)).eos_id
  plain = hf_vocab.HFTokenizerVocabulary(str(dirs["qwen_base"])).tokenizer.id_to_token(100)
  (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>",
                                                              "pad_token": plain}))
  with pytest.raises(ValueError, match="tokenizer_config.json: field 'pad_token'.*not an added"):
    hf_vocab.HFTokenizerVocabulary(str(tmp_path)).eos_id
  with pytest.raises(ValueError, match=re.escape("pad_token: '<|endoftext|>' is the EOS")):
    hf_vocab.HFTokenizerVocabulary(str(dirs["qwen_base"]), pad_token="<|endoftext|>").eos_id
  # A text that spells out seqio's pad token cannot be encoded (it would be padding).
  instruct = hf_vocab.HFTokenizerVocabulary(str(dirs["qwen_instruct"]))
  with pytest.raises(ValueError, match=re.escape("spells out '<|endoftext|>'")):
    instruct.encode("a<|endoftext|>b")
