"""pad_jax.bench.profile: ops of a traced call named by their network part."""

import jax
import jax.numpy as jnp
import pytest

from pad_jax.bench import profile


@pytest.mark.parametrize("source, part", [
    ("jit(f)/while/body/DecoderOnlyTransformer/logits_dense/dot_general", "output layer"),
    ("jit(f)/Transformer/decoder/layers_0/self_attention/self_attention._project/key/x",
     "attention q/k/v/o projections"),
    ("jit(f)/DecoderOnlyTransformer/layers_1/self_attention/out/cond/ffi_call",
     "attention q/k/v/o projections"),
    ("jit(f)/DecoderOnlyTransformer/layers_1/self_attention/self_attention._update_cache/x",
     "key/value cache"),
    ("jit(f)/DecoderOnlyTransformer/layers_1/self_attention/bkgqs,bksd->bqkgd/dot_general",
     "attention (scores, softmax, rotary)"),
    ("jit(f)/transpose(jvp(DecoderOnlyTransformer))/layers_0/mlp/dot_general", "MLP"),
    ("jit(f)/DecoderOnlyTransformer/layers_0/pre_mlp_layer_norm/mul", "norms"),
    ("jit(f)/DecoderOnlyTransformer/token_embedder/gather", "embedding"),
    ("jit(f)/DecoderOnlyTransformer/token_embedder.attend/dot_general", "output layer"),
    ("jit(f)/add", profile.OUTSIDE),
])
def test_parts(source, part):
  assert profile.part_of(source) == part


def test_phases():
  assert profile.phase_of("jit(f)/while/body/X/mlp") == "decoding loop"
  assert profile.phase_of("jit(f)/transpose(jvp(X))/mlp") == "backward"
  assert profile.phase_of("jit(f)/jvp(X)/mlp") == "forward / outside the loop"


def test_a_traced_call_is_attributed_to_its_sources():

  def mlp(x, w1, w2):
    with jax.named_scope("Net"):
      with jax.named_scope("mlp"):
        h = jnp.tanh(x @ w1)
      with jax.named_scope("logits_dense"):
        return (h @ w2).sum()

  args = [jnp.ones((64, 256)), jnp.ones((256, 512)), jnp.ones((512, 256))]
  compiled = jax.jit(mlp).lower(*args).compile()
  run = lambda: jax.block_until_ready(compiled(*args))
  run()
  result = profile.op_profile(run, compiled.as_text())
  assert result["op_cpu_seconds"] > 0
  assert set(result["by_part"]) <= {"MLP", "output layer", profile.OUTSIDE}
  assert result["by_part"].get("MLP", 0) + result["by_part"].get("output layer", 0) > 0.5
  assert result["by_kind"]["matrix products"] > 0.5
  assert result["top_ops"][0]["source"].startswith("Net/")
  notes = profile.notes(result)
  assert len(notes) == 2 and "by part" in notes[0] and "Largest ops" in notes[1]


def test_a_trace_without_module_ops_is_an_error():
  with pytest.raises(RuntimeError, match="no op of the compiled module"):
    profile.summarize({"ThunkExecutor::Execute": [1.0, 1]}, {})
