# Every target that needs Python builds .venv on first use; re-running is a no-op.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SEEDS ?= 3
PROFILE ?= paper
LAUNCHER ?= local
DATA ?= cifar10
ARGS ?=

.PHONY: venv test test-fast reproduce-cifar reproduce-imagenet figures demo bench model-table clean-venv

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	touch $@

test: venv  ## the whole test suite (about 10 minutes on 2 cores)
	$(PY) -m pytest $(ARGS)

test-fast: venv  ## everything but the slow and slurm tests
	$(PY) -m pytest -m "not slow and not slurm" $(ARGS)

model-table: venv
	$(PY) scripts/model_table.py
