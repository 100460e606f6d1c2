"""PaD stage IV, step-by-step verification: the step verifier's data.

* `verifier_data`: `python -m pad_jax.stepwise.verifier_data`, the verifier's
  training data (prefixes labelled by sampled completions); the pipeline's
  `stepwise_verifier` stage runs it and trains the verifier.

The search itself (`--decode=stepwise_beam`: partial programs, candidate
lines, scorers, the beam over lines) is in `pad_jax.decoding`
(`stepwise_steps`, `stepwise_proposer`, `stepwise_scorers`,
`stepwise_search`). See docs/stepwise.md.
"""
