"""Tests for pad_jax.student.vocab: parity with Hugging Face, round trips, seqio TF path."""

import copy
import json
import pickle

import gin
import pytest
import seqio
import tensorflow as tf

from pad_jax.student import vocab as vocab_lib

PROGRAMS = [
    "",
    "def solution():\n    apples = 5\n    return apples * 2\n",
    "def solution():\n\tx = 1\n\tif x:\n\t\treturn 'ok'\n",
    "def solution():\n    # précis: 3½ € — naïve 🤗 日本語\n    return 3.5\n",
    "  leading and trailing spaces  \n\n\n",
    "line\r\nwindows\r\n",
    "a  b   c\t\td",
    "x = 1_000_000 / 7.25e-3\n",
]


@pytest.fixture(scope="module")
def codet5(shared_data):
  return vocab_lib.CodeT5Vocabulary(str(shared_data / "codet5_tokenizer"))


@pytest.fixture(scope="module")
def real_strings(shared_data):
  """>= 1000 real strings: questions, GSM8K rationales, GSM-Hard code."""
  strings = []
  with open(shared_data / "gsm8k" / "test.jsonl", encoding="utf-8") as f:
    for line in f:
      row = json.loads(line)
      strings += [row["question"], row["answer"]]
  with open(shared_data / "pal" / "gsmhardv2.jsonl", encoding="utf-8") as f:
    for line in f:
      row = json.loads(line)
      strings += [row["input"], row["code"]]
  with open(shared_data / "svamp" / "SVAMP.json", encoding="utf-8") as f:
    strings += [r["Body"] + " " + r["Question"] for r in json.load(f)]
  return strings


def test_vocab_layout(codet5):
  assert codet5.vocab_size == 32100
  assert (codet5.pad_id, codet5.bos_id, codet5.eos_id, codet5.unk_id) == (
      0, 1, 2, 3)
  assert codet5.extra_ids == 100
  assert codet5.sentinel_id(0) == 32099
  assert codet5.sentinel_id(99) == 32000
  assert codet5.encode("<extra_id_0>") == [32099]
  assert vocab_lib.CodeT5Vocabulary(codet5.vocab_dir, 0).vocab_size == 32000


def test_parity_with_transformers(codet5, real_strings):
  transformers = pytest.importorskip("transformers")
  hf = transformers.RobertaTokenizer.from_pretrained(codet5.vocab_dir)
  assert len(hf) == 32000  # the keyword-argument trap loads only 5 tokens.
  strings = real_strings + PROGRAMS
  assert len(strings) >= 1000
  ours = codet5.encode_batch(strings)
  mismatches = [s for s, ids in zip(strings, ours)
                if ids != hf.encode(s, add_special_tokens=False)]
  assert not mismatches, f"{len(mismatches)} mismatches, e.g. {mismatches[0]!r}"
  # The single-string path and format_input agree too.
  for s in strings[:200]:
    assert list(codet5.encode(s)) == hf.encode(s, add_special_tokens=False)
    assert vocab_lib.format_input(s, codet5) == hf(s)["input_ids"]


def test_round_trips(codet5, real_strings):
  for s in PROGRAMS + real_strings:
    assert codet5.decode(codet5.encode(s)) == s
  # seqio decode stops at EOS and drops pad/bos.
  ids = vocab_lib.format_input("def f():\n    return 1", codet5)
  assert codet5.decode(ids + [0, 0, 77]) == "def f():\n    return 1"


def test_tf_path_matches_python(codet5):
  strings = PROGRAMS + ["Janet has 16 eggs.", "x" * 300]
  ds = tf.data.Dataset.from_tensor_slices({"t": strings})
  ds = seqio.preprocessors.tokenize(
      ds, {"t": seqio.Feature(codet5, add_eos=False)})
  for s, ex in zip(strings, ds.as_numpy_iterator()):
    assert ex["t"].tolist() == list(codet5.encode(s))
    assert ex["t_pretokenized"].decode() == s
  batch = codet5.encode_tf(tf.constant(strings))
  assert batch.to_list() == codet5.encode_batch(strings)
  # Batched decode_tf: pads, EOS truncation and out-of-range ids.
  rows = [codet5.encode(s) for s in strings[1:4]]
  width = max(map(len, rows)) + 3
  padded = [r + [2, 55] + [0] * (width - len(r) - 2) for r in rows]
  decoded = codet5.decode_tf(tf.constant(padded, tf.int32)).numpy()
  assert [d.decode() for d in decoded] == strings[1:4]
  assert codet5.decode_tf(tf.constant(padded[0])).numpy().decode() == (
      strings[1])


def test_identity_pickle_and_gin(codet5, tmp_path):
  for other in (pickle.loads(pickle.dumps(codet5)), copy.deepcopy(codet5)):
    assert other == codet5 and hash(other) == hash(codet5)
    assert other.encode("def f(): pass") == codet5.encode("def f(): pass")
  # Same files elsewhere are equal; other extra_ids or other files are not.
  for name in ("vocab.json", "merges.txt"):
    (tmp_path / name).write_bytes(
        (vocab_lib.pathlib.Path(codet5.vocab_dir) / name).read_bytes())
  assert vocab_lib.CodeT5Vocabulary(str(tmp_path)) == codet5
  assert vocab_lib.CodeT5Vocabulary(str(tmp_path), extra_ids=0) != codet5
  (tmp_path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
  assert vocab_lib.CodeT5Vocabulary(str(tmp_path)) != codet5
  assert codet5 != seqio.PassThroughVocabulary(32100)
  gin.clear_config()
  try:
    gin.parse_config(f"""
        VOCAB = @pad_jax.student.vocab.CodeT5Vocabulary()
        pad_jax.student.vocab.CodeT5Vocabulary.vocab_dir = '{codet5.vocab_dir}'
    """)
    assert gin.query_parameter("%VOCAB").scoped_configurable_fn() == codet5
  finally:
    gin.clear_config()


def test_bad_vocab_dirs(tmp_path):
  # Construction reads nothing (so `import tasks` never fails); use does.
  missing = vocab_lib.CodeT5Vocabulary(str(tmp_path / "missing"))
  assert "files unreadable" in repr(missing)
  with pytest.raises(FileNotFoundError, match="vocab.json"):
    _ = vocab_lib.CodeT5Vocabulary(str(tmp_path)).vocab_size
  (tmp_path / "vocab.json").write_text('{"a": 0}', encoding="utf-8")
  (tmp_path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
  with pytest.raises(ValueError, match="'<pad>': expected id 0"):
    _ = vocab_lib.CodeT5Vocabulary(str(tmp_path)).vocab_size
  (tmp_path / "vocab.json").write_text("{oops", encoding="utf-8")
  with pytest.raises(ValueError, match="vocab.json:1: invalid JSON"):
    _ = vocab_lib.CodeT5Vocabulary(str(tmp_path)).vocab_size
  (tmp_path / "pad_vocab.json").write_text('{"split_digit": true}', "utf-8")
  with pytest.raises(ValueError, match="field 'split_digit': unknown key"):
    _ = vocab_lib.CodeT5Vocabulary(str(tmp_path)).vocab_size


@pytest.mark.parametrize("split_digits", [False, True])
def test_train_bpe_vocab(real_strings, tmp_path, split_digits):
  corpus = real_strings[:1500]
  out = vocab_lib.train_bpe_vocab(corpus, str(tmp_path), vocab_size=600,
                                  split_digits=split_digits)
  vocab = vocab_lib.CodeT5Vocabulary(out, extra_ids=0)
  assert vocab.vocab_size == 600
  assert vocab.split_digits == split_digits
  assert [vocab.tokenizer.id_to_token(i) for i in range(5)] == list(
      vocab_lib.SPECIAL_TOKENS)
  for s in PROGRAMS + corpus[:300]:
    assert vocab.decode(vocab.encode(s)) == s
  pieces = [vocab.tokenizer.id_to_token(i)
            for i in vocab.encode("He paid 1250 dollars, 37.5 each")]
  numeric = [p for p in pieces if any(c.isdigit() for c in p)]
  if split_digits:
    assert numeric == ["1", "2", "5", "0", "3", "7", "5"]
    # No learned token contains a digit next to anything else.
    assert all(len(t) == 1 for t in vocab.tokenizer.get_vocab()
               if any(c.isdigit() for c in t))
  else:
    assert any(len(p.lstrip("Ġ")) > 1 for p in numeric)
  # Retraining on the same corpus gives the same files (equal vocabularies).
  again = vocab_lib.train_bpe_vocab(corpus, str(tmp_path / "again"), 600,
                                    split_digits=split_digits)
  assert vocab_lib.CodeT5Vocabulary(again, extra_ids=0) == vocab


def test_train_bpe_vocab_rejects_tiny_size(tmp_path):
  with pytest.raises(ValueError, match="must be >= 261"):
    vocab_lib.train_bpe_vocab(["a"], str(tmp_path), vocab_size=100)
