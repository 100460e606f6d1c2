"""Token layout of question -> program tasks for decoder-only students.

A decoder-only student (SmolLM2, Qwen2.5, ...; t5x's `DecoderOnlyModel`
with `seqio.PrefixLMFeatureConverter`) trains as a prefix LM on the same
raw examples as the encoder-decoder student, laid out as:

  inputs:  question `\\n`         (the prompt; no BOS, no EOS)
  targets: program `<eos>`       (the vocabulary's EOS)

The converter concatenates them into one decoder sequence, starts it with
its `bos_id` (0: the token `HFTokenizerVocabulary` puts at seqio id 0),
marks the prompt plus one position in `decoder_causal_attention`, and puts
`decoder_loss_weights` on the program and its EOS only. A Hugging Face
export prompts with `prompt_text(question)` tokenized without special tokens
and stops at the EOS. The prompt is one string (`question + "\\n"`), so the
question's last token and the newline tokenize together, as they do in the
exported model's prompt. There is no EOS after the prompt: to a pretrained
LM an EOS ends the document.

`program_tasks.register_program_task(..., decoder_only=True)` and
`pipeline_tasks.program_task(..., decoder_only=True)` register tasks with
this layout; `token_lengths` is what their over-length check counts.
"""

from __future__ import annotations

from typing import Mapping

import seqio
import tensorflow as tf

PROMPT_SEPARATOR = "\n"


def prompt_text(question: str) -> str:
  """The prompt a decoder-only student reads: the question and a newline."""
  return question + PROMPT_SEPARATOR


@seqio.map_over_dataset
def add_prompt_separator(features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """`inputs` (a string) -> `prompt_text(inputs)`; run before `tokenize`."""
  features = dict(features)
  features["inputs"] = tf.strings.join([features["inputs"], PROMPT_SEPARATOR])
  return features


def decoder_preprocessors() -> list:
  """`add_prompt_separator`, `tokenize`, `append_eos_after_trim` (targets only)."""
  return [add_prompt_separator, seqio.preprocessors.tokenize,
          seqio.preprocessors.append_eos_after_trim]


def decoder_output_features(vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
  """`inputs` without EOS (the prompt), `targets` with EOS, over `vocabulary`."""
  return {
      "inputs": seqio.Feature(vocabulary, add_eos=False, required=True),
      "targets": seqio.Feature(vocabulary, add_eos=True),
  }


def token_lengths(vocabulary: seqio.Vocabulary, question: str,
                  program: str) -> tuple[int, int]:
  """(inputs, targets) token counts of one example, as the preprocessors make them."""
  return (len(vocabulary.encode(prompt_text(question))),
          len(vocabulary.encode(program)) + 1)
