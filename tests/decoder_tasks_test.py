"""Tests for tasks.decoder_tasks: program tasks laid out for a decoder-only student.

seqio's own `PrefixLMFeatureConverter` (what t5x's `DecoderOnlyModel` uses)
turns the task's examples into decoder features: the prompt is the prefix
(no loss, bidirectional-attention mask), the program and its EOS carry the
loss. Tokenizers come from `hf_tokenizer_vocab_test.make_tokenizer_dir`.
"""

import json

import pytest
import seqio

from hf_tokenizer_vocab_test import make_tokenizer_dir
from pad_jax.data import programs
from pad_jax.student import hf_tokenizer_vocab as hf_vocab
from pad_jax.t5x_hooks import datasets as t5x_datasets
from tasks import decoder_tasks
from tasks import pipeline_tasks
from tasks import postprocessors
from tasks import program_tasks

transformers = pytest.importorskip("transformers")

LENGTHS = {"inputs": 48, "targets": 64}


def _records(long_question=False, long_program=False):
  rows = [("Tom has 12 apples and buys 35 more! How many apples does he have now?",
           "def solution():\n    apples = 12\n    bought = 35\n    return apples + bought\n", 47),
          ("A train goes 60 km/h for 2.5 hours.  How far?",
           "def solution():\n\tspeed = 60\n\thours = 2.5\n\treturn speed * hours\n", 150),
          ("Sam had 9 cards and lost 4!", "def solution():\n    return 9 - 4\n", 5)]
  if long_question:
    rows.append(("How many? " * 40, "def solution():\n    return 1\n", 1))
  if long_program:
    rows.append(("Add them all.", "def solution():\n" + "    x = 1\n" * 40 + "    return x\n", 1))
  return [programs.ProgramRecord(id=f"q{i}", question=q, program=p, answer=float(a),
                                 teacher="test", prompt_variant=0, sample=0)
          for i, (q, p, a) in enumerate(rows)]


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("decoder_tokenizers")
  return {f: make_tokenizer_dir(root / f, f) for f in ("qwen_base", "smollm_base")}


# smollm_base: HF's EOS is id 0, so without the vocabulary's swap the
# program's EOS would get no loss.
@pytest.mark.parametrize("flavour", ["qwen_base", "smollm_base"])
@pytest.mark.parametrize("pack", [False, True])
def test_prefix_lm_features(tokenizer_dirs, tmp_path, flavour, pack):
  vocab = hf_vocab.HFTokenizerVocabulary(str(tokenizer_dirs[flavour]))
  hf = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dirs[flavour]))
  records = _records()
  path = tmp_path / "programs.jsonl"
  programs.write_programs(path, records)
  task = program_tasks.register_program_task(
      f"decoder_test_{flavour}", str(path), vocabulary=vocab, validation_fraction=0,
      decoder_only=True)
  ds = task.get_dataset(LENGTHS, split="train", shuffle=False)
  converted = seqio.PrefixLMFeatureConverter(pack=pack)(ds, LENGTHS)
  rows = list(converted.as_numpy_iterator())
  total = LENGTHS["inputs"] + LENGTHS["targets"]
  # Expected: prompt (question + "\n", HF's ids) then program + EOS, per example.
  expected = {k: [] for k in ("targets", "inputs", "loss", "causal")}
  for record in records:
    prompt = vocab.encode(decoder_tasks.prompt_text(record.question))
    assert vocab.to_hf_ids(prompt) == hf(record.question + "\n",
                                         add_special_tokens=False).input_ids
    program = list(vocab.encode(record.program)) + [vocab.eos_id]
    assert vocab.to_hf_ids(program) == hf(record.program, add_special_tokens=False
                                          ).input_ids + [hf.eos_token_id]
    expected["targets"].append(prompt + program)
    # Shifted right from bos_id 0; unpacked rows shift the EOS in before the padding.
    expected["inputs"].append([0] + prompt + (program[:-1] if pack else program))
    expected["loss"].append([0] * len(prompt) + [1] * len(program))
    expected["causal"].append([1] * (len(prompt) + 1) + [0] * (len(program) - 1))
  features = {"targets": "decoder_target_tokens", "inputs": "decoder_input_tokens",
              "loss": "decoder_loss_weights", "causal": "decoder_causal_attention"}
  if pack:  # Compare segment by segment (packing puts several examples in a row).
    got = {k: [] for k in features}
    for row in rows:
      segments = row["decoder_segment_ids"]
      for segment in range(1, segments.max() + 1):
        for k, feature in features.items():
          got[k].append(row[feature][segments == segment].tolist())
    assert got == expected
  else:
    assert len(rows) == len(records)
    pad = lambda seqs: [s + [0] * (total - len(s)) for s in seqs]
    for k, feature in features.items():
      assert [r[feature].tolist() for r in rows] == pad(expected[k]), feature
  # The program's EOS is learned (weight 1), and decoding the targets gives
  # the program back.
  for ids, record in zip(expected["targets"], records):
    assert ids[-1] == vocab.eos_id != 0
  example = next(ds.as_numpy_iterator())
  assert vocab.decode(example["targets"].tolist()) == records[0].program
  assert example["inputs_pretokenized"].decode() == records[0].question + "\n"


def test_same_source_postprocessor_and_metric(tokenizer_dirs, tmp_path):
  vocab = hf_vocab.HFTokenizerVocabulary(str(tokenizer_dirs["qwen_base"]))
  path = tmp_path / "programs.jsonl"
  programs.write_programs(path, _records())
  task = program_tasks.register_program_task("decoder_test_metric", str(path),
                                             vocabulary=vocab, decoder_only=True)
  assert task.postprocessor is postprocessors.postprocess
  assert task.metric_fns == [postprocessors.execution_metric]
  assert set(task.source.splits) == set(program_tasks.SPLITS)
  assert not task.output_features["inputs"].add_eos and task.output_features["targets"].add_eos
  assert task.output_features["targets"].vocabulary is vocab
  # Registering the same arguments again is a no-op; decoder_only is part of the key.
  assert program_tasks.register_program_task("decoder_test_metric", str(path), vocabulary=vocab,
                                             decoder_only=True) is task


def test_over_length_rows_are_dropped_and_counted(tokenizer_dirs, tmp_path):
  vocab = hf_vocab.HFTokenizerVocabulary(str(tokenizer_dirs["qwen_base"]))
  records = _records(long_question=True, long_program=True)
  path = tmp_path / "programs.jsonl"
  programs.write_programs(path, records)
  lengths = [decoder_tasks.token_lengths(vocab, r.question, r.program) for r in records]
  limits = {"inputs": max(n for n, _ in lengths[:3]), "targets": max(m for _, m in lengths[:3])}
  assert lengths[3][0] > limits["inputs"] and lengths[4][1] > limits["targets"]
  # The t5x hook's truncation count (what `check_truncation` fails on) agrees.
  task = program_tasks.register_program_task("decoder_test_full", str(path), vocabulary=vocab,
                                             validation_fraction=0, decoder_only=True)
  report = t5x_datasets.count_truncated(task, "train", limits)
  assert (report.examples, report.truncated) == (5, {"inputs": 1, "targets": 1})
  assert report.longest == {"inputs": lengths[3][0], "targets": lengths[4][1]}
  # The pipeline's factory drops them and writes the counts.
  name = pipeline_tasks.program_task("decoder_test_fit", str(path), vocabulary=vocab,
                                     validation_fraction=0, max_lengths=limits,
                                     decoder_only=True)
  _, counts_path = pipeline_tasks.fit_paths(str(path), limits)
  with open(counts_path) as f:
    counts = json.load(f)
  assert (counts["rows"], counts["kept"], counts["inputs_too_long"],
          counts["targets_too_long"]) == (5, 3, 1, 1)
  kept = seqio.get_mixture_or_task(name).get_dataset(None, split="train", shuffle=False)
  assert sorted(ex["id"].decode() for ex in kept.as_numpy_iterator()) == ["q0", "q1", "q2"]


def test_decoder_only_needs_program_format_and_vocabulary(tokenizer_dirs, tmp_path):
  vocab = hf_vocab.HFTokenizerVocabulary(str(tokenizer_dirs["qwen_base"]))
  path = tmp_path / "programs.jsonl"
  programs.write_programs(path, _records())
  with pytest.raises(ValueError, match="register_program_task.vocabulary"):
    program_tasks.register_program_task("decoder_test_bad", str(path), decoder_only=True)
  with pytest.raises(ValueError, match="program_task.decoder_only"):
    pipeline_tasks.program_task("decoder_test_bad", str(path), decoder_only=True)
  with pytest.raises(ValueError, match="program_task.decoder_only"):
    pipeline_tasks.program_task("decoder_test_bad", str(path), vocabulary=vocab,
                                task_format="cot", decoder_only=True)
