"""A seqio vocabulary over a Hugging Face `tokenizer.json` (decoder-only students).

`HFTokenizerVocabulary(tokenizer_json_path)` reads the `tokenizer.json` that every modern
Hugging Face model ships (SmolLM2, Qwen2.5, Llama, ...) with the `tokenizers`
library, and the special tokens the way `transformers` does, from the files
beside it: `tokenizer_config.json`, then `special_tokens_map.json`, then
`generation_config.json` (the first file that has a key decides, so Qwen's
`"bos_token": null` means "no BOS"); constructor arguments override them.
Encoding never adds the post-processor's specials (seqio appends EOS itself,
`seqio.Feature(add_eos=True)`): ids equal
`AutoTokenizer.from_pretrained(dir)(text, add_special_tokens=False).input_ids`
up to the one swap below.

Why ids are remapped. seqio and t5x reserve id 0 for padding, not through
`pad_id` but hard-coded: feature converters pad with 0 and set
`decoder_loss_weights = targets != 0`, packing measures a sequence by its
non-zero ids, t5x's `DecoderOnlyModel` counts prompt length as `inputs != 0`
and replaces an `eos_id` of 0 by 1, and every converter starts the decoder
with `bos_id=0`.
A Hugging Face tokenizer's id 0 is usually an ordinary token (Qwen2.5: `!`)
or EOS itself (SmolLM2: `<|endoftext|>`), and its pad token often *is* EOS
(fine-tuning scripts set `pad_token = eos_token`): either way a program
would lose the loss on (and the prompt length would miscount) real tokens,
and the model would never learn to stop. So the vocabulary swaps two ids:

  seqio id 0  <->  HF id P (the "seqio pad"), every other id unchanged,

where P is, in this order: the `pad_token` argument; the tokenizer's pad
token if it is not EOS; its BOS token if that is not EOS (Llama: `<s>`,
which also makes seqio's decoder-start id 0 Llama's BOS); else a new id
equal to the tokenizer's size (`vocab_size` grows by one). P must be an
added (special) token, so that plain text never encodes to it; a text that
spells it out is an error. Model weights imported from Hugging Face must
swap the same two rows of the embedding and the LM head: `row_permutation`
(its own inverse) does that, and `to_hf_ids` / `from_hf_ids` map ids. With
the new-id fallback that row is untrained (Qwen2.5's checkpoints have spare
rows past the tokenizer; SmolLM2's do not, so the importer adds one): pass
`pad_token` (e.g. `'<|im_start|>'`) to use a trained row instead.
`hf_pad_id` still reports what Hugging Face would pad with (its pad token,
else EOS).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pathlib
from typing import Any, Iterable, Optional, Sequence

import gin
import numpy as np
import seqio
import tokenizers

from pad_jax.student import vocab as vocab_lib

TOKENIZER_FILE = "tokenizer.json"
# Where `transformers` looks for special tokens, in its order of precedence.
SPECIAL_TOKEN_FILES = ("tokenizer_config.json", "special_tokens_map.json")
GENERATION_CONFIG_FILE = "generation_config.json"
_ROLES = ("eos", "pad", "bos", "unk")


@dataclasses.dataclass(frozen=True)
class _Specials:
  """HF ids of the special tokens (None: the tokenizer has none)."""

  eos: int
  pad: Optional[int]
  bos: Optional[int]
  unk: Optional[int]
  seqio_pad: int  # P: the HF id that becomes seqio id 0.
  size: int  # HF ids are 0..size-1 (added tokens included).
  sha256: str


def read_json_object(path: pathlib.Path) -> dict[str, Any]:
  """A Hugging Face JSON file (`config.json`, `tokenizer_config.json`, ...).

  Raises:
    OSError: the file cannot be read.
    ValueError: invalid JSON or not an object, naming the file and line.
  """
  try:
    value = json.loads(path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from e
  if not isinstance(value, dict):
    raise ValueError(f"{path}:1: expected a JSON object")
  return value


def _token_text(value: Any, path: pathlib.Path, key: str) -> Optional[str]:
  """A special token as written by transformers: a string, AddedToken dict or null."""
  if isinstance(value, dict):
    value = value.get("content")
  if value is None or isinstance(value, str):
    return value
  raise ValueError(f"{path}:1: field '{key}': expected a token string, got {value!r}")


def _configured_tokens(directory: pathlib.Path, tokenizer: tokenizers.Tokenizer
                      ) -> dict[str, tuple[Optional[str], str]]:
  """{role: (token or None, file it came from)} for the roles some file names."""
  found: dict[str, tuple[Optional[str], str]] = {}
  for name in SPECIAL_TOKEN_FILES:
    path = directory / name
    if path.is_file():
      config = read_json_object(path)
      for role in _ROLES:
        key = f"{role}_token"
        if role not in found and key in config:
          found[role] = (_token_text(config[key], path, key), str(path))
  path = directory / GENERATION_CONFIG_FILE
  if path.is_file():
    config = read_json_object(path)
    for role in ("eos", "pad", "bos"):
      key = f"{role}_token_id"
      if role in found or key not in config:
        continue
      value = config[key]
      if isinstance(value, list):  # Several stop ids: the first is the EOS.
        value = value[0] if value else None
      if value is not None and (not isinstance(value, int) or
                                tokenizer.id_to_token(value) is None):
        raise ValueError(f"{path}:1: field '{key}': {value!r} is not an id of "
                         f"{directory / TOKENIZER_FILE}")
      found[role] = (None if value is None else tokenizer.id_to_token(value), str(path))
  return found


@gin.configurable(module="pad_jax.student.hf_tokenizer_vocab")
class HFTokenizerVocabulary(seqio.Vocabulary):
  """A seqio vocabulary over a Hugging Face `tokenizer.json` (see the module doc).

  Equality and hashing use the SHA-256 of `tokenizer.json` plus the resolved
  special ids, so two copies of the same tokenizer compare equal (t5x's
  model-vs-task vocabulary check). Pickling keeps only the constructor
  arguments; files are read on first use, never at construction, so that
  `import tasks` reads nothing.
  """

  def __init__(self, tokenizer_json_path: str, eos_token: Optional[str] = None,
               pad_token: Optional[str] = None, bos_token: Optional[str] = None):
    """Creates the vocabulary.

    Args:
      tokenizer_json_path: the `tokenizer.json` file (any `*.json` name), or
        the directory holding it. `tokenizer_config.json`, `special_tokens_map.json` and
        `generation_config.json` are read from the same directory if there.
      eos_token: overrides the files' EOS (e.g. `'<|im_end|>'`).
      pad_token: the token that becomes seqio id 0 (see the module doc);
        must be an added token other than EOS.
      bos_token: overrides the files' BOS.

    Raises (on first use, not here):
      FileNotFoundError: no tokenizer file at `tokenizer_json_path`.
      ValueError: a malformed file, no EOS, or a special token that is not
        in the tokenizer; the message names the file.
    """
    super().__init__(extra_ids=0)
    given = pathlib.Path(tokenizer_json_path).expanduser().resolve()
    self._tokenizer_file = given if given.suffix == ".json" else given / TOKENIZER_FILE
    self._overrides = {"eos": eos_token, "pad": pad_token, "bos": bos_token}

  # ---------------------------------------------------------------- files

  @functools.cached_property
  def tokenizer(self) -> tokenizers.Tokenizer:
    """The `tokenizers.Tokenizer` of `tokenizer.json` (loaded on first use)."""
    path = self._tokenizer_file
    if not path.is_file():
      raise FileNotFoundError(f"{path}: tokenizer file not found (pass the directory "
                              "of a Hugging Face tokenizer, or its tokenizer.json)")
    try:
      return tokenizers.Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on bad files.
      raise ValueError(f"{path}: not a tokenizers tokenizer.json: {e}") from e

  @functools.cached_property
  def _specials(self) -> _Specials:
    tokenizer = self.tokenizer
    path = self._tokenizer_file
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    size = max(vocab.values()) + 1
    found = _configured_tokens(path.parent, tokenizer)
    for role, token in self._overrides.items():
      if token is not None:
        found[role] = (token, f"{type(self).__name__}.{role}_token")
    ids: dict[str, Optional[int]] = {}
    for role in _ROLES:
      token, source = found.get(role, (None, ""))
      ids[role] = None if token is None else vocab.get(token)
      if token is not None and ids[role] is None:
        raise ValueError(f"{source}: field '{role}_token': {token!r} is not a token "
                         f"of {path}")
    if ids["eos"] is None:
      raise ValueError(f"{path.parent}: no eos_token in {' / '.join(SPECIAL_TOKEN_FILES)} "
                       f"or {GENERATION_CONFIG_FILE}; pass eos_token=")
    seqio_pad = self._seqio_pad(ids, found, size)
    digest = hashlib.sha256(path.read_bytes())
    digest.update(json.dumps([ids[r] for r in _ROLES] + [seqio_pad]).encode())
    return _Specials(eos=ids["eos"], pad=ids["pad"], bos=ids["bos"], unk=ids["unk"],
                     seqio_pad=seqio_pad, size=size, sha256=digest.hexdigest())

  def _seqio_pad(self, ids: dict[str, Optional[int]],
                 found: dict[str, tuple[Optional[str], str]], size: int) -> int:
    """P, the HF id that seqio's id 0 stands for (the module doc's order)."""
    if self._overrides["pad"] is not None:
      if ids["pad"] == ids["eos"]:
        raise ValueError(f"{type(self).__name__}.pad_token: {self._overrides['pad']!r} "
                         "is the EOS token; seqio's pad (id 0) must differ from EOS")
      candidates = ["pad"]
    else:
      candidates = ["pad", "bos"]
    for role in candidates:
      hf_id = ids[role]
      if hf_id is None or hf_id == ids["eos"]:
        continue
      if hf_id not in self.tokenizer.get_added_tokens_decoder():
        raise ValueError(f"{found[role][1]}: field '{role}_token': "
                         f"{found[role][0]!r} is not an added token, so text can "
                         "encode to it; it cannot be seqio's pad (id 0): pass pad_token=")
      return hf_id
    return size

  # ---------------------------------------------------------------- ids

  @property
  def tokenizer_file(self) -> str:
    return str(self._tokenizer_file)

  @property
  def pad_hf_id(self) -> int:
    """The Hugging Face id that seqio id 0 stands for (== tokenizer size: a new id)."""
    return self._specials.seqio_pad

  @property
  def hf_eos_id(self) -> int:
    return self._specials.eos

  @property
  def hf_pad_id(self) -> int:
    """What Hugging Face pads with: its pad token, else EOS (fine-tuning scripts)."""
    specials = self._specials
    return specials.eos if specials.pad is None else specials.pad

  @property
  def hf_bos_id(self) -> Optional[int]:
    return self._specials.bos

  def _swap(self, i: int) -> int:
    pad = self._specials.seqio_pad
    return pad if i == 0 else 0 if i == pad else i

  def from_hf_ids(self, ids: Iterable[int]) -> list[int]:
    """Hugging Face ids -> seqio ids (swaps 0 and `pad_hf_id`)."""
    return [self._swap(int(i)) for i in ids]

  def to_hf_ids(self, ids: Iterable[int]) -> list[int]:
    """seqio ids -> Hugging Face ids (the same swap: it is its own inverse)."""
    return self.from_hf_ids(ids)

  def row_permutation(self, num_rows: int) -> np.ndarray:
    """Index that reorders embedding / LM-head rows between HF and seqio ids.

    `seqio_rows = hf_rows[perm]` and `hf_rows = seqio_rows[perm]`.

    Args:
      num_rows: rows of the weight (the model's vocabulary, often padded past
        the tokenizer's size).

    Raises:
      ValueError: `num_rows` < `vocab_size` (the new pad row needs a row).
    """
    if num_rows < self.vocab_size:
      raise ValueError(f"{self._tokenizer_file}: a weight with {num_rows} rows cannot "
                       f"hold the {self.vocab_size} seqio ids (seqio pad = HF id "
                       f"{self.pad_hf_id}); pad the rows first")
    perm = np.arange(num_rows)
    perm[0], perm[self.pad_hf_id] = self.pad_hf_id, 0
    return perm

  # ------------------------------------------------------ seqio.Vocabulary API

  @property
  def eos_id(self) -> int:
    return self._swap(self._specials.eos)

  @property
  def bos_id(self) -> Optional[int]:
    bos = self._specials.bos
    return None if bos is None else self._swap(bos)

  @property
  def unk_id(self) -> Optional[int]:
    unk = self._specials.unk
    return None if unk is None else self._swap(unk)

  @property
  def _base_vocab_size(self) -> int:
    specials = self._specials
    return max(specials.size, specials.seqio_pad + 1)

  def _checked(self, hf_ids: Sequence[int], text: str) -> list[int]:
    ids = self.from_hf_ids(hf_ids)
    if 0 in ids:
      token = self.tokenizer.id_to_token(self._specials.seqio_pad)
      raise ValueError(f"{self._tokenizer_file}: the text spells out {token!r}, the "
                       f"token that is seqio's pad (id 0): {text[:80]!r}")
    return ids

  def _encode(self, s: str) -> list[int]:
    return self._checked(self.tokenizer.encode(s, add_special_tokens=False).ids, s)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """Encodes many strings at once (parallel in Rust); no EOS added."""
    encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [self._checked(e.ids, s) for e, s in zip(encodings, texts)]

  def _decode(self, ids: Iterable[int]) -> str:
    # Pad, BOS and EOS are layout, not text (seqio's `decode` has already cut
    # after the first EOS); other special tokens stay visible, as written.
    layout = {0, self.eos_id, self.bos_id}
    kept = self.to_hf_ids(i for i in (int(i) for i in ids) if i not in layout)
    return self.tokenizer.decode(kept, skip_special_tokens=False)

  # The TF path is CodeT5Vocabulary's (tf.py_function over `_encode`,
  # `encode_batch` and `_decode`), shared rather than copied.
  _encode_tf = vocab_lib.CodeT5Vocabulary._encode_tf
  _decode_tf = vocab_lib.CodeT5Vocabulary._decode_tf
  _encode_np_scalar = vocab_lib.CodeT5Vocabulary._encode_np_scalar
  _encode_np_batch = vocab_lib.CodeT5Vocabulary._encode_np_batch
  _decode_np = vocab_lib.CodeT5Vocabulary._decode_np

  # ------------------------------------------- identity, pickling, printing

  def _key(self) -> str:
    return self._specials.sha256

  def __eq__(self, other: Any) -> bool:
    if not isinstance(other, HFTokenizerVocabulary):
      return NotImplemented
    return self._key() == other._key()

  def __hash__(self) -> int:
    return hash(self._key())

  def __getstate__(self) -> dict[str, Any]:
    return {"tokenizer_json_path": str(self._tokenizer_file),
            **{f"{r}_token": t for r, t in self._overrides.items()}}

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__init__(**state)

  def __repr__(self) -> str:
    text = f"HFTokenizerVocabulary(tokenizer_json_path={str(self._tokenizer_file)!r}"
    text += "".join(f", {r}_token={t!r}" for r, t in self._overrides.items() if t)
    try:
      text += (f", vocab_size={self.vocab_size}, eos_id={self.eos_id}, "
               f"pad_hf_id={self.pad_hf_id}, sha256={self._key()[:12]}")
    except (OSError, ValueError):
      text += ", files unreadable"
    return text + ")"

  __str__ = __repr__
