"""Byte-level BPE vocabularies (CodeT5's, or a small trained one) for seqio/t5x.

`CodeT5Vocabulary` is a `seqio.Vocabulary` over a RoBERTa-style byte-level BPE
(`vocab.json` + `merges.txt`), built on the `tokenizers` library. Over the
CodeT5 files it gives exactly the ids of Hugging Face's
`RobertaTokenizer.from_pretrained(vocab_dir).encode(text,
add_special_tokens=False)`, plus CodeT5's 100 sentinels for a 32,100 vocabulary.

Id layout (the same for CodeT5 and for vocabularies from `train_bpe_vocab`):

  0 `<pad>` (seqio's PAD_ID, also t5x's decoder start), 1 `<s>` (BOS),
  2 `</s>` (EOS), 3 `<unk>`, 4 `<mask>`, 5.. BPE tokens, then the
  `extra_ids` sentinels in T5/seqio order: `<extra_id_0>` is the LAST id
  (vocab_size - 1), `<extra_id_99>` the first after the BPE tokens.

Input format: CodeT5 was trained on, and its Hugging Face tokenizer produces,
`<s> text </s>` (ids `1 ... 2`). `format_input` gives those ids; seqio tasks
get the same ids by tokenizing, running `add_bos` on `inputs`, then seqio's
`append_eos_after_trim` (see `tasks/`).

A trained vocabulary directory may hold `pad_vocab.json` (written by
`train_bpe_vocab`) that records pre-tokenization choices such as
`split_digits`, so loading reproduces exactly how it was trained.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
from typing import Any, Iterable, Optional, Sequence, Union

import gin
import numpy as np
import seqio
import tensorflow as tf
import tokenizers
from tokenizers import decoders
from tokenizers import models
from tokenizers import pre_tokenizers
from tokenizers import trainers

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
MASK_ID = 4
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "<mask>")
CONFIG_FILE = "pad_vocab.json"
_CONFIG_KEYS = frozenset({"split_digits"})

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
# The shared CodeT5 tokenizer files relative to the repository root; the
# effective default (`default_vocab_dir()`) honours PAD_DATA_DIR.
DEFAULT_VOCAB_DIR = str(REPO_ROOT.parent / "shared" / "data" / "codet5_tokenizer")


def default_vocab_dir() -> str:
  """Returns `$PAD_DATA_DIR/codet5_tokenizer`, else `DEFAULT_VOCAB_DIR`."""
  data_dir = os.environ.get("PAD_DATA_DIR")
  if data_dir:
    return os.path.join(data_dir, "codet5_tokenizer")
  return DEFAULT_VOCAB_DIR


def _read_config(vocab_dir: pathlib.Path) -> dict[str, Any]:
  """Reads and validates the optional `pad_vocab.json` of a vocab directory."""
  path = vocab_dir / CONFIG_FILE
  if not path.exists():
    return {"split_digits": False}
  try:
    config = json.loads(path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from e
  if not isinstance(config, dict):
    raise ValueError(f"{path}:1: expected a JSON object")
  unknown = set(config) - _CONFIG_KEYS
  if unknown:
    raise ValueError(f"{path}:1: field '{sorted(unknown)[0]}': unknown key "
                     f"(known: {sorted(_CONFIG_KEYS)})")
  split_digits = config.get("split_digits", False)
  if not isinstance(split_digits, bool):
    raise ValueError(f"{path}:1: field 'split_digits': expected true/false, "
                     f"got {split_digits!r}")
  return {"split_digits": split_digits}


def _pre_tokenizer(split_digits: bool) -> Any:
  byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  if not split_digits:
    return byte_level
  # Digits first, so that ByteLevel's regex never sees a multi-digit run.
  return pre_tokenizers.Sequence(
      [pre_tokenizers.Digits(individual_digits=True), byte_level])


def _build_tokenizer(vocab_file: str, merges_file: str, split_digits: bool,
                     sentinels: Sequence[str]) -> tokenizers.Tokenizer:
  """The same pipeline as Hugging Face's RobertaTokenizer (no post-processor)."""
  tokenizer = tokenizers.Tokenizer(models.BPE.from_file(vocab_file, merges_file))
  tokenizer.pre_tokenizer = _pre_tokenizer(split_digits)
  tokenizer.decoder = decoders.ByteLevel()
  # Like RobertaTokenizer (transformers 5): special tokens written in the
  # text become their ids; no lstrip/rstrip.
  tokenizer.add_special_tokens(
      [tokenizers.AddedToken(t, special=True, normalized=False)
       for t in SPECIAL_TOKENS])
  if sentinels:
    tokenizer.add_special_tokens(
        [tokenizers.AddedToken(t, special=True, normalized=False)
         for t in sentinels])
  return tokenizer


@gin.configurable(module="pad_jax.student.vocab")
class CodeT5Vocabulary(seqio.Vocabulary):
  """A seqio vocabulary over a RoBERTa-style byte-level BPE.

  Equality and hashing use the SHA-256 of the vocabulary files plus
  `extra_ids`, so t5x's model-vs-task vocabulary check passes for two copies
  of the same files in different directories and fails for different files.
  Pickling keeps only the directory and `extra_ids`; the `tokenizers` object
  is rebuilt lazily.
  """

  def __init__(self, vocab_dir: Optional[str] = None, extra_ids: int = 100):
    """Creates the vocabulary.

    Args:
      vocab_dir: directory with `vocab.json` and `merges.txt` (and optionally
        `pad_vocab.json`); default `default_vocab_dir()` (the CodeT5 files).
      extra_ids: number of sentinel ids `<extra_id_N>` appended after the BPE
        tokens (CodeT5: 100; trained student vocabularies: usually 0).

    Raises (on first use, not here, so that `import tasks` never reads files):
      FileNotFoundError: a vocabulary file is missing.
      ValueError: the files are malformed or do not put `<pad>`, `<s>`,
        `</s>`, `<unk>`, `<mask>` at ids 0..4.
    """
    super().__init__(extra_ids=extra_ids)
    self._vocab_dir = pathlib.Path(vocab_dir or default_vocab_dir()).resolve()
    self._vocab_file = self._vocab_dir / "vocab.json"
    self._merges_file = self._vocab_dir / "merges.txt"

  @functools.cached_property
  def _files(self) -> tuple[dict[str, Any], str, int]:
    """Validates the files once: (config, sha256 of files + config, BPE size)."""
    for path in (self._vocab_file, self._merges_file):
      if not path.is_file():
        raise FileNotFoundError(f"{path}: vocabulary file not found (set "
                                "PAD_DATA_DIR or pass vocab_dir)")
    config = _read_config(self._vocab_dir)
    digest = hashlib.sha256()
    vocab_bytes = self._vocab_file.read_bytes()
    digest.update(vocab_bytes)
    digest.update(self._merges_file.read_bytes())
    digest.update(json.dumps(config, sort_keys=True).encode())
    try:
      vocab = json.loads(vocab_bytes)
    except json.JSONDecodeError as e:
      raise ValueError(f"{self._vocab_file}:{e.lineno}: invalid JSON: {e.msg}"
                      ) from e
    for expected_id, token in enumerate(SPECIAL_TOKENS):
      if vocab.get(token) != expected_id:
        raise ValueError(
            f"{self._vocab_file}:1: field '{token}': expected id {expected_id},"
            f" got {vocab.get(token)!r}")
    if sorted(vocab.values()) != list(range(len(vocab))):
      raise ValueError(f"{self._vocab_file}:1: ids are not 0..{len(vocab) - 1}")
    return config, digest.hexdigest(), len(vocab)

  # ---------------------------------------------------------------- tokenizer

  @property
  def vocab_dir(self) -> str:
    return str(self._vocab_dir)

  @property
  def split_digits(self) -> bool:
    return self._files[0]["split_digits"]

  @property
  def sentinels(self) -> list[str]:
    """Sentinel strings in id order: `<extra_id_{N-1}>` ... `<extra_id_0>`."""
    return [f"<extra_id_{i}>" for i in reversed(range(self.extra_ids))]

  @functools.cached_property
  def tokenizer(self) -> tokenizers.Tokenizer:
    """The underlying `tokenizers.Tokenizer` (built on first use)."""
    tokenizer = _build_tokenizer(str(self._vocab_file), str(self._merges_file),
                                 self.split_digits, self.sentinels)
    if tokenizer.get_vocab_size(with_added_tokens=True) != self.vocab_size:
      raise ValueError(f"{self._vocab_dir}: a sentinel collides with a BPE "
                       "token; the vocabulary size does not add up")
    return tokenizer

  def sentinel_id(self, index: int) -> int:
    """Id of `<extra_id_{index}>` (T5 order: index 0 is the last id)."""
    if not 0 <= index < self.extra_ids:
      raise ValueError(f"sentinel index {index} outside [0, {self.extra_ids})")
    return self.vocab_size - 1 - index

  # ------------------------------------------------------ seqio.Vocabulary API

  @property
  def bos_id(self) -> int:
    return BOS_ID

  @property
  def eos_id(self) -> int:
    return EOS_ID

  @property
  def unk_id(self) -> int:
    return UNK_ID

  @property
  def _base_vocab_size(self) -> int:
    return self._files[2]

  def _encode(self, s: str) -> list[int]:
    return self.tokenizer.encode(s, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """Encodes many strings at once (parallel in Rust); no EOS added."""
    encodings = self.tokenizer.encode_batch(list(texts),
                                            add_special_tokens=False)
    return [e.ids for e in encodings]

  def _decode(self, ids: Iterable[int]) -> str:
    # pad/bos/eos are layout, not text; <unk>, <mask> and sentinels stay
    # visible. (seqio's `decode` has already mapped ids >= the base size to
    # <unk> and cut after the first EOS.)
    kept = [int(i) for i in ids if int(i) not in (PAD_ID, BOS_ID, EOS_ID)]
    return self.tokenizer.decode(kept, skip_special_tokens=False)

  def _encode_tf(self, s: tf.Tensor) -> Union[tf.Tensor, tf.RaggedTensor]:
    """Tokenizes a string scalar (-> int32 [n]) or a batch (-> ragged)."""
    s = tf.convert_to_tensor(s, dtype=tf.string)
    if s.shape.rank is None or s.shape.rank > 2:
      raise ValueError(f"encode_tf takes strings of rank 0, 1 or 2, got shape "
                       f"{s.shape}")
    if s.shape.rank == 0:
      ids = tf.py_function(self._encode_np_scalar, [s], tf.int32)
      ids.set_shape([None])
      return ids
    flat = tf.reshape(s, [-1])
    values, lengths = tf.py_function(self._encode_np_batch, [flat],
                                     (tf.int32, tf.int64))
    values.set_shape([None])
    lengths.set_shape([None])
    ragged = tf.RaggedTensor.from_row_lengths(values, lengths)
    if s.shape.rank == 1:
      return ragged
    return tf.RaggedTensor.from_uniform_row_length(
        ragged, tf.shape(s, out_type=tf.int64)[-1])

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    """Detokenizes int ids [..., n] into strings [...]."""
    ids = tf.convert_to_tensor(ids)
    out = tf.py_function(self._decode_np, [ids], tf.string)
    out.set_shape(ids.shape[:-1])
    return out

  def _encode_np_scalar(self, s: tf.Tensor) -> np.ndarray:
    return np.asarray(self._encode(s.numpy().decode("utf-8")), np.int32)

  def _encode_np_batch(self, s: tf.Tensor) -> tuple[np.ndarray, np.ndarray]:
    encoded = self.encode_batch([x.decode("utf-8") for x in s.numpy()])
    lengths = np.asarray([len(e) for e in encoded], np.int64)
    values = np.asarray([i for e in encoded for i in e], np.int32)
    return values, lengths

  def _decode_np(self, ids: tf.Tensor) -> np.ndarray:
    array = ids.numpy()
    rows = array.reshape(-1, array.shape[-1]) if array.ndim else array
    texts = [self._decode(row.tolist()).encode("utf-8") for row in rows]
    return np.asarray(texts, dtype=object).reshape(array.shape[:-1])

  # ------------------------------------------- identity, pickling, printing

  def _key(self) -> tuple[str, int]:
    return (self._files[1], self.extra_ids)

  def __eq__(self, other: Any) -> bool:
    if not isinstance(other, CodeT5Vocabulary):
      return NotImplemented
    return self._key() == other._key()

  def __hash__(self) -> int:
    return hash(self._key())

  def __getstate__(self) -> dict[str, Any]:
    return {"vocab_dir": str(self._vocab_dir), "extra_ids": self.extra_ids}

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__init__(state["vocab_dir"], state["extra_ids"])

  def __repr__(self) -> str:
    text = (f"CodeT5Vocabulary(vocab_dir={str(self._vocab_dir)!r}, "
            f"extra_ids={self.extra_ids}")
    try:
      text += (f", vocab_size={self.vocab_size}, split_digits="
               f"{self.split_digits}, sha256={self._files[1][:12]}")
    except (OSError, ValueError):
      text += ", files unreadable"
    return text + ")"

  __str__ = __repr__


def format_input(text: str,
                 vocabulary: Optional[CodeT5Vocabulary] = None) -> list[int]:
  """Ids of `<s> text </s>`, as Hugging Face's CodeT5 tokenizer formats inputs.

  Equals `RobertaTokenizer.from_pretrained(dir)(text)["input_ids"]` (no
  truncation). seqio tasks produce the same ids through `add_bos` +
  `append_eos_after_trim` (they also trim to the feature length).

  Args:
    text: the input text (e.g. a question).
    vocabulary: the vocabulary; default `CodeT5Vocabulary()`.

  Returns:
    The id list, starting with BOS (1) and ending with EOS (2).
  """
  vocabulary = vocabulary or _default_vocabulary()
  return [BOS_ID] + list(vocabulary.encode(text)) + [EOS_ID]


@functools.lru_cache(maxsize=1)
def _default_vocabulary() -> CodeT5Vocabulary:
  return CodeT5Vocabulary()


def train_bpe_vocab(texts: Iterable[str],
                    out_dir: str,
                    vocab_size: int,
                    split_digits: bool = False,
                    min_frequency: int = 2) -> str:
  """Trains a small byte-level BPE for a from-scratch student.

  Writes `vocab.json`, `merges.txt` and `pad_vocab.json` into `out_dir`,
  loadable with `CodeT5Vocabulary(out_dir, extra_ids=0)`; ids 0..4 are the
  same special tokens as CodeT5's. Deterministic for the same texts.

  Args:
    texts: the corpus (e.g. questions and programs).
    out_dir: output directory (created if missing; files are overwritten).
    vocab_size: size including the 5 special tokens and the 256 byte tokens.
    split_digits: make every digit its own token (numbers are then never
      merged, which makes arithmetic learnable for tiny models); recorded in
      `pad_vocab.json` so that loading pre-tokenizes the same way.
    min_frequency: minimum pair count for a merge.

  Returns:
    `out_dir`.

  Raises:
    ValueError: `vocab_size` cannot hold the special and byte tokens.
  """
  minimum = len(SPECIAL_TOKENS) + 256
  if vocab_size < minimum:
    raise ValueError(f"vocab_size={vocab_size} must be >= {minimum} "
                     "(5 special tokens + 256 bytes)")
  tokenizer = tokenizers.Tokenizer(models.BPE())
  tokenizer.pre_tokenizer = _pre_tokenizer(split_digits)
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size,
      min_frequency=min_frequency,
      special_tokens=list(SPECIAL_TOKENS),
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False)
  tokenizer.train_from_iterator(texts, trainer=trainer)
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  tokenizer.model.save(str(out))
  (out / CONFIG_FILE).write_text(
      json.dumps({"split_digits": split_digits}, indent=2) + "\n",
      encoding="utf-8")
  return str(out)
