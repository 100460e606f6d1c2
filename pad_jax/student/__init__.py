"""The student (PaD stage II): what the network is and how it is loaded.

* `network.py`: the Flax T5/CodeT5 network (t5x's parameter tree);
  `attention.py`: its attention layer and decode caches; `projection.py`:
  projection kernels stored as t5x's `DenseGeneral`, applied in 2-D;
* `models.py`: the t5x model class (`EncoderDecoderModel`: fused loss,
  cross-attention keys/values projected once per decoding call);
* `vocab.py`: the CodeT5 vocabulary as a `seqio.Vocabulary`;
* `hf_import.py`: Hugging Face checkpoints -> t5x checkpoints
  (`python -m pad_jax.convert_hf`); `model_gin.py`: the one loader of a t5x
  model from gin files;
* `kernels/`: optional CPU decoding kernels (XLA FFI custom calls) behind
  `kernels.dense` and `kernels.decode_attention`.
"""
