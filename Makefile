# Every target that needs Python builds .venv on first use (re-running is a no-op). `make help` lists them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SEEDS ?= 3# seeds per network for the CIFAR sweep
PROFILE ?= paper# paper: the full 64k-iteration protocol | smoke: the same pipeline with a few iterations
LAUNCHER ?= local# local | slurm (configs/launcher/slurm.yaml; set its keys with ARGS='hydra.launcher.partition=...')
CIFAR_ROOT ?= data/cifar10
ARGS ?=# extra Hydra overrides for the training targets, or pytest arguments for the test targets

CIFAR_NETS := plain20 plain32 plain44 plain56 plain110 resnet20 resnet32 resnet44 resnet56 resnet110 resnet1202
comma := ,
empty :=
space := $(empty) $(empty)
CIFAR_EXPERIMENTS := $(subst $(space),$(comma),$(addprefix cifar10/,$(CIFAR_NETS)))

ifeq ($(PROFILE),smoke)
  # Tiny iteration counts and evaluation sets; CIFAR-10 if it is there, otherwise Fashion-MNIST (what this checks is the pipeline).
  SMOKE_DATA := $(if $(wildcard $(CIFAR_ROOT)/cifar-10-batches-py),data=cifar10 data.root=$(CIFAR_ROOT),data=fashion_mnist)
  PROFILE_ARGS := trainer=smoke $(SMOKE_DATA) data.batch_size=16 data.limit_test=256 run_root=results/smoke/runs
  RUN_ROOT := results/smoke/runs
  FIGURES_OUT := results/smoke
  SEEDS := 1
else ifeq ($(PROFILE),paper)
  PROFILE_ARGS := data.root=$(CIFAR_ROOT)
  RUN_ROOT := results/runs
  FIGURES_OUT := results
else
  $(error PROFILE=$(PROFILE) is unknown: use PROFILE=paper or PROFILE=smoke)
endif

.PHONY: help venv test test-fast reproduce-cifar prepare-cifar figures demo bench model-table

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

venv: $(VENV)/.installed  ## the virtual environment (pinned versions from requirements/constraints.txt)
$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	touch $@

test: venv  ## the whole test suite (about 10 minutes on 2 cores)
	$(PY) -m pytest $(ARGS)

test-fast: venv  ## the tests without the slow and SLURM ones
	$(PY) -m pytest -m "not slow and not slurm" $(ARGS)

prepare-cifar: venv  ## download CIFAR-10 to CIFAR_ROOT once (torchvision verifies the checksums)
	$(PY) scripts/prepare_data.py cifar10 --root $(CIFAR_ROOT)

reproduce-cifar: venv $(if $(filter paper,$(PROFILE)),prepare-cifar)  ## every CIFAR-10 run of the paper x SEEDS, then the figures
	$(PY) scripts/train.py -m experiment=$(CIFAR_EXPERIMENTS) 'seed=range(0,$(SEEDS))' launcher=$(LAUNCHER) $(PROFILE_ARGS) $(ARGS)
	$(PY) scripts/make_figures.py --runs $(RUN_ROOT) --out $(FIGURES_OUT)

figures: venv  ## redraw the paper's figures and tables from the run records in results/runs
	$(PY) scripts/make_figures.py --runs $(RUN_ROOT) --out $(FIGURES_OUT)

model-table: venv  ## results/tables/architectures.md: layers, parameters and FLOPs against the paper
	$(PY) scripts/model_table.py
