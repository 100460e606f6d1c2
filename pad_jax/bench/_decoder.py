"""The decoder-only student in the `train` and `decode` benchmarks (`--model=smollm2_135m`).

pad-jax's `DecoderOnlyTransformer` under t5x's `DecoderOnlyModel` (what
`models/smollm2_135m.gin` gives `t5x.train`) against transformers'
`LlamaForCausalLM` built from the equivalent `LlamaConfig`, random weights,
fp32, no dropout (the released models have none):

* train: one sequence of `inputs + targets` tokens per example, causal, the
  loss on every token; t5x's training step (`train.t5x_step`) vs. the
  torch model's `labels=` loss, `backward`, `torch.optim.AdamW.step`; each
  side its own random initialisation (as the T5 comparison);
* decode: BOS + a `inputs`-token prompt, then `decode_length` greedy tokens
  with EOS off; t5x's `predict_batch` (prefill, then one token per step,
  `temperature_sample` at temperature 0) vs. `generate(do_sample=False)` over
  the same weights (`hf_export_decoder.hf_tensors`); the ids are compared.

Nothing here imports jax or torch at module level (see `_t5`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

SHAPES = {
    # HuggingFaceTB/SmolLM2-135M (gin_configs/models/smollm2_135m.gin).
    "smollm2_135m": dict(vocab_size=49152, emb_dim=576, num_heads=9,
                         num_kv_heads=3, num_layers=30, head_dim=64,
                         mlp_dim=1536, rms_norm_eps=1e-5, rope_theta=100000.0,
                         tie_word_embeddings=True),
    # A seconds-long smoke test (models/tiny_decoder.gin's shape).
    "tiny_decoder": dict(vocab_size=1024, emb_dim=128, num_heads=8,
                         num_kv_heads=4, num_layers=2, head_dim=16,
                         mlp_dim=256, rms_norm_eps=1e-6, rope_theta=10000.0,
                         tie_word_embeddings=False),
}
MAX_POSITIONS = 8192


def network_config(name: str):
  """The `DecoderConfig` of shape `name` (fp32, no dropout)."""
  from pad_jax.student import decoder_network  # pylint: disable=import-outside-toplevel
  return decoder_network.DecoderConfig(**SHAPES[name], dtype="float32",
                                       dropout_rate=0.0,
                                       max_position_embeddings=MAX_POSITIONS)


def llama_config(name: str):
  """The transformers `LlamaConfig` of the same network."""
  import transformers  # pylint: disable=import-outside-toplevel
  s = SHAPES[name]
  return transformers.LlamaConfig(
      vocab_size=s["vocab_size"], hidden_size=s["emb_dim"],
      intermediate_size=s["mlp_dim"], num_hidden_layers=s["num_layers"],
      num_attention_heads=s["num_heads"], num_key_value_heads=s["num_kv_heads"],
      head_dim=s["head_dim"], rms_norm_eps=s["rms_norm_eps"],
      rope_theta=s["rope_theta"], tie_word_embeddings=s["tie_word_embeddings"],
      max_position_embeddings=MAX_POSITIONS, attention_dropout=0.0,
      attention_bias=False, mlp_bias=False, hidden_act="silu",
      bos_token_id=0, eos_token_id=None, pad_token_id=0)


def forward_flops(name: str, batch: int, length: int) -> int:
  """Matmul FLOPs of one causal forward pass (embedding lookup excluded)."""
  s = SHAPES[name]
  e, hd = s["emb_dim"], s["head_dim"]
  proj = e * hd * (2 * s["num_heads"] + 2 * s["num_kv_heads"]) + 3 * e * s["mlp_dim"]
  attention = 2 * s["num_heads"] * hd * length  # scores + values, full rows
  per_token = s["num_layers"] * (proj + attention) + e * s["vocab_size"]
  return 2 * batch * length * per_token


def decode_flops(name: str, batch: int, prompt: int, steps: int) -> int:
  """Prefill of the prompt plus `steps` cached one-token steps."""
  total = forward_flops(name, batch, prompt)
  for step in range(steps):
    total += forward_flops(name, batch, 1) + 4 * batch * SHAPES[name][
        "num_layers"] * SHAPES[name]["num_heads"] * SHAPES[name]["head_dim"] * (
            prompt + step)
  return total


def make_batch(name: str, batch: int, length: int,
               seed: int = 0) -> dict[str, np.ndarray]:
  """Random full-length tokens in DecoderFeatureConverter's causal layout."""
  rng = np.random.RandomState(seed)
  tgt = rng.randint(3, SHAPES[name]["vocab_size"], (batch, length)).astype(np.int32)
  dec_in = np.concatenate([np.zeros((batch, 1), np.int32), tgt[:, :-1]], 1)
  return {"decoder_input_tokens": dec_in, "decoder_target_tokens": tgt,
          "decoder_loss_weights": np.ones_like(tgt, dtype=np.float32)}


def _decoder_only_model(module, vocab, unused_output_vocab, optimizer, **kwargs):
  """`train.t5x_step`'s model constructor for t5x's DecoderOnlyModel."""
  from t5x import models  # pylint: disable=import-outside-toplevel
  del unused_output_vocab
  return models.DecoderOnlyModel(module, vocab, optimizer, **kwargs)


def pad_train_step(name: str, batch: dict[str, np.ndarray], t5x_step: Callable):
  """(step closure, XLA costs) of t5x's training step of the decoder."""
  from pad_jax.student import decoder_network  # pylint: disable=import-outside-toplevel
  module = decoder_network.DecoderOnlyTransformer(network_config(name))
  return t5x_step(_decoder_only_model, module, SHAPES[name]["vocab_size"], batch)


def torch_train_step(name: str, batch: dict[str, np.ndarray],
                     learning_rate: float, weight_decay: float) -> Callable[[], Any]:
  """LlamaForCausalLM(labels=...) + torch AdamW, one step a call."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(llama_config(name)).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate,
                                weight_decay=weight_decay)
  ids = torch.from_numpy(batch["decoder_target_tokens"].astype(np.int64))

  def run():
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                 labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

  return run


class _IdentityRows:
  """`hf_tensors`' vocabulary argument for random weights: ids are HF's ids."""

  @staticmethod
  def row_permutation(rows: int) -> np.ndarray:
    return np.arange(rows)


def decode_fns(name: str, prompts: np.ndarray, steps: int, impls: list[str]
               ) -> tuple[dict[str, Callable[[], np.ndarray]], str]:
  """Greedy decoding closures over the same random weights: `pad` and `hf`.

  Each returns the `[batch, steps]` generated ids. Also returns the HLO
  text of pad's compiled call (`profile` names the traced ops by it).
  """
  import jax  # pylint: disable=import-outside-toplevel
  import seqio  # pylint: disable=import-outside-toplevel
  from t5x import decoding  # pylint: disable=import-outside-toplevel
  from t5x import models  # pylint: disable=import-outside-toplevel
  from pad_jax.student import decoder_network  # pylint: disable=import-outside-toplevel

  if set(impls) - {"pad", "hf"} or "pad" not in impls:
    raise ValueError(f"--impls: {impls}: the decoder-only models take pad "
                     "and optionally hf (it copies pad's weights)")
  cfg = network_config(name)
  no_eos = cfg.vocab_size  # An id never generated: every row runs all steps.
  model = models.DecoderOnlyModel(
      decoder_network.DecoderOnlyTransformer(cfg),
      seqio.PassThroughVocabulary(no_eos, eos_id=no_eos), None,
      decode_fn=functools.partial(decoding.temperature_sample, temperature=0.0))
  batch, prompt = prompts.shape
  tokens = np.zeros((batch, 1 + prompt + steps), np.int32)
  tokens[:, 1:prompt + 1] = prompts  # BOS 0, the prompt, then the targets
  causal = np.zeros_like(tokens)
  causal[:, :prompt + 1] = 1
  features = {"decoder_input_tokens": tokens, "decoder_causal_attention": causal}
  params = model.get_initial_variables(
      jax.random.PRNGKey(0), {"decoder_input_tokens": tokens.shape},
      {"decoder_input_tokens": np.int32})["params"]
  predict = jax.jit(lambda p, b: model.predict_batch(p, b)).lower(
      params, features).compile()

  def pad():
    out = np.asarray(jax.block_until_ready(predict(params, features)))
    return out[:, :steps]  # t5x returns the sequence after the prompt

  fns = {"pad": pad}
  if "hf" in impls:
    fns["hf"] = _hf_generate(name, cfg, params, prompts, steps)
  return fns, predict.as_text()


def _hf_generate(name: str, cfg: Any, params: Any, prompts: np.ndarray,
                 steps: int) -> Callable[[], np.ndarray]:
  """transformers `generate` (greedy, EOS off) over pad's weights."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from pad_jax.student import hf_export_decoder  # pylint: disable=import-outside-toplevel
  model = transformers.LlamaForCausalLM(llama_config(name)).eval()
  tensors = hf_export_decoder.hf_tensors(cfg, params, _IdentityRows(),
                                         cfg.vocab_size)
  state = {k: torch.from_numpy(v) for k, v in tensors.items()}
  if cfg.tie_word_embeddings:
    state["lm_head.weight"] = state["model.embed_tokens.weight"]
  model.load_state_dict(state)
  ids = torch.from_numpy(np.concatenate(
      [np.zeros((prompts.shape[0], 1), np.int64), prompts.astype(np.int64)], 1))

  def run():
    with torch.inference_mode():
      out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                           max_new_tokens=steps, min_new_tokens=steps,
                           do_sample=False, num_beams=1, eos_token_id=None,
                           pad_token_id=0)
    return out[:, ids.shape[1]:].numpy()

  return run
