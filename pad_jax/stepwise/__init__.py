"""Step-by-step verified decoding (PaD stage IV).

* `steps`: what a partial program is (lines, the runnable check of a prefix).
* `proposer`: K candidate next lines per partial program from a t5x model
  (`predict_batch_with_aux(..., prompt_with_targets=True)`, stop at a newline).
* `scorers`: the reasoning scorers (log-probability; a trained step verifier).
* `search`: the step-wise beam search and its resumable file loop.
* `verifier_data`: `python -m pad_jax.stepwise.verifier_data`, the verifier's
  training data (prefixes labelled by sampled completions).

See docs/stepwise.md.
"""
