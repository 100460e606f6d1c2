"""PaD stage III, self-refinement: data, task format and the inference loop.

* `mutations`: error-injection operators on verified programs;
* `feedback`: the interpreter's feedback on a faulty program;
* `formatting`: the refinement input (question + faulty program + feedback)
  within the student's input budget;
* `data`: refinement rows from mutants (executed in the sandbox);
* `student`: refinement rows from the student's own wrong programs;
* `loop`: decode -> execute -> refine, up to R rounds, resumable
  (`python -m pad_jax.infer ... --refine_rounds=R`);
* `python -m pad_jax.refine`: the data CLI. See docs/refinement.md.
"""
