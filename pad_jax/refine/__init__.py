"""PaD stage III, self-refinement: the training data.

* `mutations`: error-injection operators on verified programs;
* `data`: refinement rows from mutants (executed in the sandbox);
* `student`: refinement rows from the student's own wrong programs;
* `python -m pad_jax.refine`: the data CLI. See docs/refinement.md.

The inference side (the interpreter's feedback, the refinement input format
and the decode -> execute -> refine loop behind `python -m pad_jax.infer
--refine_rounds=R`) is in `pad_jax.decoding` (`feedback`, `refine_inputs`,
`refine_loop`): this package builds on the decoder, never the reverse.
"""
