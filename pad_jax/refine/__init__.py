"""PaD stage III, self-refinement: the training data.

* `mutations`: error-injection operators on verified programs;
* `data`: refinement rows from mutants (executed in the sandbox);
* `student`: refinement rows from the student's own wrong programs;
* `python -m pad_jax.refine`: the data CLI. See docs/refinement.md.

The interpreter's feedback is `pad_jax.execution.feedback`, the refinement
input format `pad_jax.data.refine_inputs` (also read by the seqio tasks), and
the decode -> execute -> refine loop behind `python -m pad_jax.infer
--refine_rounds=R` is `pad_jax.decoding.refine_loop`: this package builds on
them, never the reverse.
"""
