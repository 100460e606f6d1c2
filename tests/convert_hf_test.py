"""Hugging Face -> t5x import: exact parity on random-weight T5 models.

Models are built with transformers (torch, CPU) from small configs: a
CodeT5-small-like v1.0 (ReLU, tied + scaled head) and a v1.1 (gated-GELU).
Both pad-jax's network and t5x's example network run the converted params.
"""

import json
import os
import subprocess
import sys

import flax
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import seqio
from t5x import adafactor
from t5x import decoding
from t5x import models
from t5x import optimizers
from t5x import partitioning
from t5x import utils
from t5x.examples.t5 import network as t5x_network

from pad_jax import errors
from pad_jax.student import hf_import as convert_hf
from pad_jax.student import models as pad_models
from pad_jax.student import network as pad_network
from pad_jax.student import model_gin

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 160
EOS = 2
ATOL = 1e-4


def _hf_model(tmp_path, name, fmt="safetensors", **overrides):
  """A random T5ForConditionalGeneration saved to `tmp_path/name`."""
  kwargs = dict(vocab_size=VOCAB, d_model=64, d_kv=16, num_heads=4, d_ff=96,
                num_layers=2, num_decoder_layers=2, dropout_rate=0.0,
                pad_token_id=0, eos_token_id=EOS, bos_token_id=1,
                decoder_start_token_id=0)
  kwargs.update(overrides)
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(
      transformers.T5Config(**kwargs)).eval()
  path = tmp_path / name
  if fmt == "safetensors":
    model.save_pretrained(str(path))
  else:
    model.config.save_pretrained(str(path))
    torch.save(model.state_dict(), str(path / "pytorch_model.bin"))
  return model, str(path)


def _inputs(seed=0):
  rng = np.random.RandomState(seed)
  enc = rng.randint(5, VOCAB, size=(2, 150))  # > max_distance: far buckets.
  enc[1, 90:] = 0
  enc[0, -1] = enc[1, 89] = EOS
  targets = rng.randint(5, VOCAB, size=(2, 140))
  dec_in = np.concatenate([np.zeros((2, 1), int), targets[:, :-1]], axis=1)
  return enc, dec_in, targets


def _networks(cfg):
  pad = pad_network.Transformer(pad_network.T5Config(**cfg))
  t5x_cfg = {k: v for k, v in cfg.items()
             if k in t5x_network.T5Config.__dataclass_fields__}
  return {"pad": pad,
          "t5x": t5x_network.Transformer(t5x_network.T5Config(**t5x_cfg))}


def _check_forward_parity(hf_model, hf_dir, logits_fn=None):
  config = convert_hf.read_hf_config(hf_dir)
  params = convert_hf.convert_params(config,
                                     convert_hf.read_hf_weights(hf_dir))
  cfg = convert_hf.network_config(config)
  enc, dec_in, targets = _inputs()
  with torch.no_grad():
    out = hf_model(input_ids=torch.tensor(enc),
                   attention_mask=torch.tensor(enc > 0),
                   decoder_input_ids=torch.tensor(dec_in),
                   output_hidden_states=True)
  hf_enc = out.encoder_last_hidden_state.numpy()
  hf_logits = (logits_fn(out) if logits_fn else out.logits).numpy()
  valid = enc > 0
  for name, net in _networks(cfg).items():
    variables = {"params": params}
    encoded = net.apply(variables, jnp.asarray(enc), enable_dropout=False,
                        method=net.encode)
    np.testing.assert_allclose(np.asarray(encoded)[valid], hf_enc[valid],
                               atol=ATOL, rtol=0, err_msg=name)
    logits = net.apply(variables, jnp.asarray(enc), jnp.asarray(dec_in),
                       jnp.asarray(targets), enable_dropout=False)
    np.testing.assert_allclose(np.asarray(logits), hf_logits, atol=ATOL,
                               rtol=0, err_msg=name)
    assert np.abs(hf_logits).max() > 1.0  # Not a trivially small model.
  return params, cfg


def _until_eos(row):
  row = list(row)
  return row[:row.index(EOS) + 1] if EOS in row else row


def _check_greedy_parity(hf_model, params, cfg, steps=24):
  enc, _, _ = _inputs(seed=1)
  enc = enc[:, :40]
  enc[1, 30:] = 0
  with torch.no_grad():
    hf = hf_model.generate(input_ids=torch.tensor(enc),
                           attention_mask=torch.tensor(enc > 0),
                           max_new_tokens=steps, do_sample=False, num_beams=1,
                           eos_token_id=EOS, pad_token_id=0,
                           decoder_start_token_id=0).numpy()[:, 1:]
  vocab = seqio.PassThroughVocabulary(VOCAB, eos_id=EOS)
  batch = {"encoder_input_tokens": jnp.asarray(enc),
           "decoder_input_tokens": jnp.zeros((2, steps), jnp.int32)}
  module = pad_network.Transformer(pad_network.T5Config(**cfg))
  # Both cross-attention decode paths: projected at every step (t5x's model
  # class) and once per input (the model files' class).
  for model_cls in (models.EncoderDecoderModel, pad_models.EncoderDecoderModel):
    model = model_cls(module, vocab, vocab, adafactor.Adafactor(),
                      decode_fn=decoding.temperature_sample)
    ours = np.asarray(model.predict_batch(params, batch))
    for a, b in zip(ours, hf):
      assert _until_eos(a) == _until_eos(b)
  assert max(len(_until_eos(r)) for r in hf) > 5


def test_v1_0_codet5_like_parity_and_greedy(tmp_path):
  hf_model, hf_dir = _hf_model(tmp_path, "v10")
  params, cfg = _check_forward_parity(hf_model, hf_dir)
  assert cfg["logits_via_embedding"] and cfg["mlp_activations"] == ("relu",)
  assert "logits_dense" not in params["decoder"]
  _check_greedy_parity(hf_model, params, cfg)


def test_v1_1_gated_gelu_parity_from_pytorch_bin(tmp_path):
  hf_model, hf_dir = _hf_model(tmp_path, "v11", fmt="bin",
                               feed_forward_proj="gated-gelu",
                               tie_word_embeddings=False)
  params, cfg = _check_forward_parity(hf_model, hf_dir)
  assert cfg["mlp_activations"] == ("gelu", "linear")
  assert not cfg["logits_via_embedding"]
  _check_greedy_parity(hf_model, params, cfg)


def test_untied_lm_head_is_mapped(tmp_path):
  """A transformers-4 style v1.1 checkpoint with its own `lm_head.weight`."""
  # (Here also a deeper decoder: transformers 5's `generate` cache cannot
  # handle num_decoder_layers != num_layers, so only the forward is compared.)
  hf_model, hf_dir = _hf_model(tmp_path, "untied", fmt="bin",
                               feed_forward_proj="gated-gelu",
                               num_decoder_layers=3)
  state = torch.load(os.path.join(hf_dir, "pytorch_model.bin"))
  head = torch.randn(VOCAB, 64)
  state["lm_head.weight"] = head
  torch.save(state, os.path.join(hf_dir, "pytorch_model.bin"))
  config_path = os.path.join(hf_dir, "config.json")
  config = json.load(open(config_path))
  config["tie_word_embeddings"] = False
  config.pop("scale_decoder_outputs", None)
  json.dump(config, open(config_path, "w"))
  _check_forward_parity(
      hf_model, hf_dir,
      logits_fn=lambda out: out.decoder_hidden_states[-1] @ head.T)


def test_checkpoint_restores_with_t5x(tmp_path):
  """convert() writes checkpoint_0 + model.gin; t5x restores both ways."""
  _, hf_dir = _hf_model(tmp_path, "v10")
  out_dir = str(tmp_path / "ckpt")
  ckpt = convert_hf.convert(hf_dir, out_dir)
  assert ckpt == os.path.join(out_dir, "checkpoint_0")
  model = model_gin.load_model_from_gin([os.path.join(out_dir, "model.gin")])
  assert isinstance(model.module, pad_network.Transformer)
  expected = convert_hf.convert_params(convert_hf.read_hf_config(hf_dir),
                                       convert_hf.read_hf_weights(hf_dir))
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  partitioner = partitioning.PjitPartitioner(num_partitions=1)
  # As t5x.train with the model file's Adafactor or with optax AdamW (the
  # fine-tuning run's), starting fresh optimizer state; as t5x.infer (params).
  adamw = optimizers.chain([optax.clip_by_global_norm(1.0), optax.adamw(1e-4)])
  for optimizer_def in (model.optimizer_def, adamw, None):
    initializer = utils.TrainStateInitializer(
        optimizer_def=optimizer_def, init_fn=model.get_initial_variables,
        input_shapes=shapes, partitioner=partitioner)
    if optimizer_def:
      cfg = utils.RestoreCheckpointConfig(
          path=ckpt, mode="specific", strict=False, fallback_to_scratch=True,
          assignment_map=convert_hf.FRESH_OPTIMIZER_ASSIGNMENT_MAP)
    else:  # As t5x.infer restores.
      cfg = utils.RestoreCheckpointConfig(path=ckpt, mode="specific",
                                          strict=False)
    state, _ = utils.create_checkpoint_manager_and_restore(
        initializer, partitioner, cfg, ckpt, jax.random.PRNGKey(0),
        use_orbax=True)
    assert int(state.step) == 0
    restored = flax.traverse_util.flatten_dict(
        flax.core.unfreeze(state.params))
    want = flax.traverse_util.flatten_dict(expected)
    assert set(restored) == set(want)
    for key, value in want.items():
      np.testing.assert_array_equal(np.asarray(restored[key]), value)


def test_write_checkpoint_creates_its_directory(tmp_path):
  _, hf_dir = _hf_model(tmp_path, "v10")
  config = convert_hf.read_hf_config(hf_dir)
  gin_file = tmp_path / "model.gin"
  gin_file.write_text(convert_hf.model_gin_text(
      convert_hf.network_config(config), hf_dir))
  model = model_gin.load_model_from_gin([str(gin_file)])
  params = convert_hf.convert_params(config, convert_hf.read_hf_weights(hf_dir))
  out = tmp_path / "new" / "model"
  ckpt = convert_hf.write_checkpoint(model, params, str(out), step=3)
  assert ckpt == str(out / "checkpoint_3")
  assert os.listdir(tmp_path / "new") == ["model"]  # not into the parent
  assert (out / "checkpoint_3").is_dir()


def test_config_json_errors_name_the_file(tmp_path):
  with pytest.raises(convert_hf.ConversionError,
                     match=f"{tmp_path / 'config.json'}: not found"):
    convert_hf.read_hf_config(str(tmp_path))
  (tmp_path / "config.json").write_text("[1, 2]\n")
  with pytest.raises(convert_hf.ConversionError,
                     match=f"{tmp_path / 'config.json'}:1: expected a JSON object"):
    convert_hf.read_hf_config(str(tmp_path))


def test_unsupported_configs_fail_clearly(tmp_path):
  base = dict(model_type="t5", vocab_size=10, d_model=8, d_kv=4, num_heads=2,
              d_ff=16, num_layers=1)
  with pytest.raises(convert_hf.ConversionError, match="layer_norm_epsilon"):
    convert_hf.network_config({**base, "layer_norm_epsilon": 1e-5})
  with pytest.raises(convert_hf.ConversionError, match="feed_forward_proj"):
    convert_hf.network_config({**base, "feed_forward_proj": "gelu"})
  with pytest.raises(convert_hf.ConversionError, match="model_type"):
    convert_hf.network_config({**base, "model_type": "bart"})
  with pytest.raises(convert_hf.ConversionError,
                     match="config.json: field 'd_model': missing"):
    convert_hf.network_config({k: v for k, v in base.items() if k != "d_model"})
  _, hf_dir = _hf_model(tmp_path, "v10")
  config = convert_hf.read_hf_config(hf_dir)
  state = convert_hf.read_hf_weights(hf_dir)
  state.pop("decoder.block.1.layer.2.DenseReluDense.wo.weight")
  state["extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(convert_hf.ConversionError, match="wo.weight' missing"):
    convert_hf.convert_params(config, state)
  state = convert_hf.read_hf_weights(hf_dir)
  state["extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(convert_hf.ConversionError, match="extra.weight"):
    convert_hf.convert_params(config, state)
  # The CLI: one-line error naming the file and field, exit status 2.
  bad = tmp_path / "bad"
  bad.mkdir()
  (bad / "config.json").write_text(json.dumps({**base, "feed_forward_proj": "gelu"}))
  proc = _convert_cli(f"--hf_dir={bad}", f"--out_dir={tmp_path / 'never'}")
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f"error: {bad / 'config.json'}: field 'feed_forward_proj': activation")
  assert "Traceback" not in proc.stderr
  (bad / "config.json").write_text('{"model_type": "t5",\n  oops}')
  proc = _convert_cli(f"--hf_dir={bad}", f"--out_dir={tmp_path / 'never'}")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f"error: {bad / 'config.json'}:2: invalid JSON")
  assert not (tmp_path / "never").exists()


def _convert_cli(*flags):
  return subprocess.run([sys.executable, "-m", "pad_jax.convert_hf", *flags],
                        capture_output=True, text=True, timeout=300,
                        check=False)


def test_cli_follows_the_error_convention(tmp_path):
  # ConversionError is a ConfigError: `pad_jax.cli` prints it in one line, status 2.
  assert issubclass(convert_hf.ConversionError, errors.ConfigError)
  proc = _convert_cli(f"--hf_dir={tmp_path}")
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1] == "error: --out_dir is required"
  assert "Traceback" not in proc.stderr


def test_help_lists_the_flags():
  proc = _convert_cli("--help")
  # absl prints the usage and exits with status 1 (its convention).
  assert proc.returncode in (0, 1), proc.stderr[-2000:]
  assert "--hf_dir" in proc.stdout and "--out_dir" in proc.stdout


def test_model_from_a_saved_t5x_config(tmp_path):
  """A MODEL_DIR/config.gin: the training program's bindings are skipped and
  the optimizer (whose schedule may count the data) is not built."""
  config = tmp_path / "config.gin"
  config.write_text(
      "from __gin__ import dynamic_registration\n"
      "import __main__ as train_script\n"
      "from pad_jax import train_hooks\n"
      "from t5x import adafactor\n"
      # Not models/tiny.gin: registering t5x's example network in this
      # process makes `network.T5Config` in codet5_base.gin ambiguous.
      "include 'models/codet5_small.gin'\n"
      "TRAIN_STEPS = @train_hooks.steps_for_epochs()\n"
      "train_hooks.steps_for_epochs.mixture_or_task_name = 'pad_no_such'\n"
      "train_hooks.steps_for_epochs.epochs = 1\n"
      "train_hooks.steps_for_epochs.batch_size = 8\n"
      "adafactor.Adafactor.step_offset = %TRAIN_STEPS\n"
      "train_script.train.model = %MODEL\n"
      "train_script.train:\n"
      "  total_steps = %TRAIN_STEPS\n")
  assert model_gin.script_selectors(str(config)) == ["train_script.train"]
  assert model_gin.script_selectors("models/codet5_small.gin") == []
  model = model_gin.load_model_from_gin([str(config)], with_optimizer=False)
  assert isinstance(model, models.EncoderDecoderModel)
  assert model.optimizer_def is None
  assert model.output_vocabulary.vocab_size == 32100
  with pytest.raises(ValueError, match="no seqio task"):
    model_gin.load_model_from_gin([str(config)])  # builds the optimizer


def test_written_model_gin_parses_after_another_network_was_registered(tmp_path):
  """A model.gin names pad-jax's network itself: no ambiguous `network.T5Config`
  when a model file using t5x's example network was parsed first."""
  gin.clear_config()
  model_gin.load_model_from_gin(["models/tiny.gin"], with_optimizer=False)  # t5x's network
  path = tmp_path / "model.gin"
  path.write_text(convert_hf.MODEL_GIN_TEMPLATE.format(hf_dir="hf", fields="  num_heads = 8"))
  gin.clear_config()
  model = model_gin.load_model_from_gin([str(path)], with_optimizer=False)
  assert isinstance(model.module, pad_network.Transformer)
  assert model.module.config.num_heads == 8
  gin.clear_config()
