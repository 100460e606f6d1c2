"""How the student writes programs: batch decoding and the search around it.

* `settings.py`: `DecodeSettings`, the one decode-settings type;
* `decoder.py`: `Decoder` (t5x `predict_batch_with_aux` over a checkpoint);
  `files.py`: `decode_file` (questions JSONL -> predictions JSONL, resumable);
* `beam_search.py`: t5x's beam search with the self-attention cache in place;
* `refine_loop.py`: self-refinement at inference (PaD stage III): re-decode
  a failing program from the question, the program and the interpreter's
  feedback (`execution/feedback.py`, `data/refine_inputs.py`);
* `stepwise_*.py`: step-by-step verified decoding (PaD stage IV).

`pad_jax.refine` (training data for III) and `pad_jax.stepwise` (the step
verifier's data) build on this package; it never imports them.
"""
