"""The end-to-end PaD pipeline: teacher -> verify -> t5x train -> decode -> score -> report.

`python -m pad_jax.pipeline --gin_file=gin_configs/pipelines/demo.gin` runs it
(`__main__.py`); `runner.py` orders the stages, one module per stage
(`synthesize_stage`, `verify_stage`, `train_stage`, `decode_stage`,
`score_stage`, `report`), `configs.py` holds every stage's config,
`run_dir.py` the run directory and its markers, `child.py` the child
processes, `experiments.py` the sweeps over whole pipelines.
"""
