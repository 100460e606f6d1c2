# The two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
T5X_WHEELS ?= $(or $(PAD_T5X_WHEELS),../shared/wheels)
STAMP := $(VENV)/.pad_jax_installed

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps --force-reinstall $(T5X_WHEELS)/*.whl
	$(PY) -c 'import t5x, t5x.train, pad_jax, tasks'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pad_jax.pipeline --gin_file=gin_configs/pipelines/demo.gin

test: $(STAMP)
	$(PY) -m pytest -q --durations=15 tests

clean:
	rm -rf $(VENV) build *.egg-info
