# The two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
# Accelerator hosts: `make setup-tpu` (Cloud TPU VM worker) or `make setup-gpu`
# (NVIDIA, CUDA 12): pad-jax with jax[tpu]/jax[cuda12]==0.10.2 and t5x, airio,
# jestimator pinned from GitHub, no test dependencies (docs/tpu_vm.md).
# Optional: a C++17 compiler (`c++` or $CXX) for the CPU decoding kernels,
# built on first use; without one decoding runs the jnp code (docs/student.md)
# and tests/kernels_test.py skips its kernel tests.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
T5X_WHEELS ?= $(or $(PAD_T5X_WHEELS),../shared/wheels)
STAMP := $(VENV)/.pad_jax_installed
# apache-beam (the `beam` extra) pins protobuf<7; TensorFlow's and sentencepiece's
# generated code needs the protobuf 7 runtime, on which Beam runs (setup.py).
PROTOBUF := 'protobuf>=7.36.1,<8'
# The commits the wheel directory was built from (README, "Installing t5x").
T5X_GIT_PINS := 'git+https://github.com/google-research/t5x.git@cc342d41' \
  'git+https://github.com/google/airio.git@69897df7' \
  'git+https://github.com/google-research/jestimator.git@326824a4'

.PHONY: setup demo test clean setup-tpu setup-gpu

setup: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,beam]'
	$(PY) -m pip install --quiet --no-deps $(PROTOBUF)
	$(PY) -m pip install --quiet --no-deps --force-reinstall $(T5X_WHEELS)/*.whl
	$(PY) -c 'import t5x, t5x.train, pad_jax, tasks, apache_beam'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pad_jax.pipeline --gin_file=gin_configs/pipelines/demo.gin
	$(PY) -m pad_jax.experiments --name=demo_stages

# Two pytest workers (a test file stays on one worker): most tests wait on one
# core (imports, compiles, subprocesses), so 2 workers use the 2 cores better.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 tests

# setup-tpu / setup-gpu: the `tpu` / `gpu` extra of setup.py.
setup-tpu setup-gpu: setup-%:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$*]'
	$(PY) -m pip install --quiet --no-deps $(T5X_GIT_PINS)
	$(PY) -c 'import t5x, t5x.train, pad_jax, tasks'

clean:
	rm -rf $(VENV) build *.egg-info
