# Every target that needs Python builds .venv on first use (re-running is a no-op). `make help` lists them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SEEDS ?= 3# seeds per network for the CIFAR sweep
DATASET ?= cifar10# the CIFAR sweep: cifar10 (the paper) | cifar100 (the same nets and protocol, configs/experiment/cifar100/)
PROFILE ?= paper# paper: the full 64k-iteration protocol | smoke: the same pipeline with a few iterations
LAUNCHER ?= local# local | slurm (configs/launcher/slurm.yaml; set its keys with ARGS='hydra.launcher.partition=...') | ray (configs/launcher/ray.yaml: this machine's GPUs, or the Ray cluster of RAY_ADDRESS)
EXTRAS ?= dev# the extras of pyproject.toml that venv installs, e.g. EXTRAS=dev,ray,search (LAUNCHER=ray adds ray; search: Optuna, for hparams_search=...)
CIFAR_ROOT ?= data/$(DATASET)
ARGS ?=# extra Hydra overrides for the training targets, or pytest arguments for the test targets
TEST_WORKERS ?= 2# make test, make test-fast: pytest-xdist workers (the SLURM and Ray test modules share one, tests/conftest.py)

NETS ?=# the CIFAR sweep: only these nets, e.g. NETS=plain20,resnet20 (default: every file of configs/experiment/DATASET/)
RUN_ROOT ?= results/runs# where the runs are written and read (the smoke profile: SMOKE_OUT/runs)
FIGURES_OUT ?= results# where figures, tables and REPORT.md go (the smoke profile: SMOKE_OUT)

comma := ,
empty :=
space := $(empty) $(empty)
# Bad variables are reported by the check-input target that every command runs first: one `error:` line, exit 2.
INPUT_ERROR :=
# One experiment file per paper result: the sweeps run every file of a folder.
experiments_in = $(basename $(notdir $(wildcard configs/experiment/$(1)/*.yaml)))
ifeq ($(filter $(DATASET),cifar10 cifar100),)
  INPUT_ERROR := DATASET=$(DATASET) is unknown: use DATASET=cifar10 or DATASET=cifar100
endif
CIFAR_FOLDER := $(if $(filter cifar100,$(DATASET)),cifar-100-python,cifar-10-batches-py)
CIFAR_NETS := $(call experiments_in,$(DATASET))
ifneq ($(NETS),)
  ifneq ($(filter-out $(CIFAR_NETS),$(subst $(comma),$(space),$(NETS))),)
    INPUT_ERROR := NETS=$(NETS): no experiment file configs/experiment/$(DATASET)/NET.yaml for \
      $(filter-out $(CIFAR_NETS),$(subst $(comma),$(space),$(NETS))); choose from $(CIFAR_NETS)
  endif
  CIFAR_NETS := $(subst $(comma),$(space),$(NETS))
endif
CIFAR_EXPERIMENTS := $(subst $(space),$(comma),$(addprefix $(DATASET)/,$(CIFAR_NETS)))

extras_in = $(subst $(comma),$(space),$(1))
ifeq ($(LAUNCHER),ray)
  ifeq ($(filter ray,$(call extras_in,$(EXTRAS))),)
    override EXTRAS := $(EXTRAS),ray
  endif
endif
# The extras .venv has (its stamp lists them; an empty stamp is from before EXTRAS): venv installs again if one is missing.
INSTALLED_EXTRAS := $(or $(shell cat $(VENV)/.installed 2>/dev/null),$(if $(wildcard $(VENV)/.installed),dev))

ifeq ($(PROFILE),smoke)
  # Tiny iteration counts and evaluation sets; DATASET if it is there, otherwise Fashion-MNIST (what this checks is the pipeline).
  SMOKE_DATA := $(if $(wildcard $(CIFAR_ROOT)/$(CIFAR_FOLDER)),data=$(DATASET) data.root=$(CIFAR_ROOT),data=fashion_mnist)
  SMOKE_OUT ?= results/smoke
  RUN_ROOT := $(SMOKE_OUT)/runs
  FIGURES_OUT := $(SMOKE_OUT)
  PROFILE_ARGS := trainer=smoke $(SMOKE_DATA) data.batch_size=16 data.limit_test=128 run_root=$(RUN_ROOT)
  SEEDS := 1
else ifeq ($(PROFILE),paper)
  PROFILE_ARGS := data.root=$(CIFAR_ROOT) run_root=$(RUN_ROOT)
else
  INPUT_ERROR := PROFILE=$(PROFILE) is unknown: use PROFILE=paper or PROFILE=smoke
endif

.PHONY: help check-input venv lint test test-fast reproduce-cifar prepare-cifar figures demo bench gpu-check model-table FORCE

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

check-input:
	@$(if $(INPUT_ERROR),echo "error: $(INPUT_ERROR)" >&2; exit 2,:)

venv: check-input $(VENV)/.installed  ## the virtual environment (pinned versions from requirements/constraints.txt)
$(VENV)/.installed: pyproject.toml requirements/constraints.txt $(if $(filter-out $(INSTALLED_EXTRAS),$(call extras_in,$(EXTRAS))),FORCE)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements/constraints.txt -e ".[$(EXTRAS)]"
	echo $(sort $(INSTALLED_EXTRAS) $(call extras_in,$(EXTRAS))) > $@
FORCE:

lint: venv  ## ruff: the formatter's check and the linter (line limit 120; settings in pyproject.toml)
	$(VENV)/bin/ruff format --check --quiet .
	$(VENV)/bin/ruff check --quiet .

# The tests start about 200 Python processes: each reads src/ compiled once here, even where PYTHONDONTWRITEBYTECODE is set.
test: venv lint  ## lint, then the whole test suite on 2 workers (7.5 min of tests on 2 CPU cores, README; the slowest 20 are listed at the end)
	$(PY) -m compileall -q src
	$(PY) -m pytest -n $(TEST_WORKERS) $(ARGS)

test-fast: venv  ## the tests without the slow and SLURM ones
	$(PY) -m compileall -q src
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not slow and not slurm" $(ARGS)

prepare-cifar: venv  ## download DATASET (CIFAR-10, or DATASET=cifar100) to CIFAR_ROOT once (torchvision verifies the checksums)
	$(PY) scripts/prepare_data.py $(DATASET) --root $(CIFAR_ROOT) --root-setting CIFAR_ROOT=

reproduce-cifar: venv $(if $(filter paper,$(PROFILE)),prepare-cifar)  ## every CIFAR-10 run of the paper (DATASET=cifar100: the same on CIFAR-100) x SEEDS, then the figures
	$(PY) scripts/train.py -m experiment=$(CIFAR_EXPERIMENTS) 'seed=range(0,$(SEEDS))' launcher=$(LAUNCHER) $(PROFILE_ARGS) $(ARGS)
	$(MAKE) figures PROFILE=$(PROFILE)

figures: venv  ## redraw the paper's figures, tables and results/REPORT.md from the run records (RUN_ROOT=dir FIGURES_OUT=dir)
	$(PY) scripts/layer_responses.py --runs $(RUN_ROOT) --out $(FIGURES_OUT) --skip-if-none
	$(PY) scripts/make_figures.py --runs $(RUN_ROOT) --out $(FIGURES_OUT)

# The demo: CIFAR-10 if it is in CIFAR_ROOT, otherwise Fashion-MNIST (apt-get install dataset-fashion-mnist).
DEMO_DATASET := $(if $(wildcard $(CIFAR_ROOT)/cifar-10-batches-py),cifar10,fashion_mnist)
DEMO_DATA := data=$(DEMO_DATASET) $(if $(filter cifar10,$(DEMO_DATASET)),data.root=$(CIFAR_ROOT))
DEMO_OUT ?= results/demo# the demo's runs (DEMO_OUT/runs), figures, tables and report
DEMO_RUNS = $(DEMO_OUT)/runs/demo_$(DEMO_DATASET)
DEMO_LANDSCAPE ?= --grid 9 --line-points 9 --images 128# plain-56 and ResNet-56: one to two minutes on 2 idle CPU cores
demo: venv  ## plain-20/56 vs ResNet-20/56 on a CPU (9 min on 2 cores with bf16 arithmetic, README): the degradation problem, then its fix
	$(PY) scripts/train.py -m experiment=demo model=plain20,plain56,resnet20,resnet56 $(DEMO_DATA) run_root=$(DEMO_OUT)/runs $(ARGS)
	$(PY) scripts/loss_landscape.py --run $(DEMO_RUNS)/plain56/seed* $(DEMO_RUNS)/resnet56/seed* $(DEMO_LANDSCAPE)
	$(MAKE) figures RUN_ROOT=$(DEMO_OUT)/runs FIGURES_OUT=$(DEMO_OUT)

model-table: venv  ## results/tables/architectures.md: layers, parameters and FLOPs against the paper
	$(PY) scripts/model_table.py

# ----- ImageNet: Tables 2 and 3 (10-crop), Table 4 (multi-scale), Figure 4 ------------------------------------------
IMAGENET_ROWS := $(call experiments_in,imagenet)
IMAGENET_EXPERIMENTS := $(subst $(space),$(comma),$(addprefix imagenet/,$(IMAGENET_ROWS)))
IMAGENET_PROTOCOLS ?= center,10crop,multiscale
NPROC ?= 1# ImageNet, LAUNCHER=local: processes (GPUs) per run through torchrun; with slurm set hydra.launcher.gpus_per_node in ARGS
TV_MODELS ?= resnet18 resnet34 resnet50 resnet101 resnet152
TV_WEIGHTS ?= IMAGENET1K_V1# torchvision weights name (downloaded once) or a saved state_dict file
ifeq ($(PROFILE),smoke)
  # 20 iterations of batch 16 (a folder of 16 training images will do) and 512 val images: checks the ImageNet
  # pipeline end to end; the numbers mean nothing.
  IMAGENET_PROFILE_ARGS := trainer.max_iters=20 trainer.eval_every=10 trainer.checkpoint_every=10 data.batch_size=16 data.limit_test=512 data.mean_images=512 run_root=$(RUN_ROOT)
  IMAGENET_EVAL_ARGS := --limit 64
else
  IMAGENET_PROFILE_ARGS := run_root=$(RUN_ROOT)
endif
IMAGENET_TRAIN := $(if $(and $(filter local,$(LAUNCHER)),$(filter-out 1,$(NPROC))),$(VENV)/bin/torchrun --standalone --nproc_per_node=$(NPROC),$(PY))
define require_imagenet
	@test -n "$(DATA)" || { echo "error: DATA=DIR is required: the ImageNet folder with train/ and val/, one folder per class (README, 'ImageNet')" >&2; exit 2; }
	@test -d "$(DATA)/val" || { echo "error: $(DATA)/val does not exist: DATA must hold train/ and val/, one folder per class (README, 'ImageNet')" >&2; exit 2; }
endef

.PHONY: reproduce-imagenet evaluate-imagenet evaluate-torchvision

reproduce-imagenet: venv  ## every ImageNet row of Tables 2 and 3 (DATA=dir), then their 10-crop/multi-scale errors and the tables
	$(require_imagenet)
	@test -d "$(DATA)/train" || { echo "error: $(DATA)/train does not exist: DATA must hold train/ and val/ (README, 'ImageNet')" >&2; exit 2; }
	$(IMAGENET_TRAIN) scripts/train.py -m experiment=$(IMAGENET_EXPERIMENTS) data.root=$(DATA) launcher=$(LAUNCHER) $(IMAGENET_PROFILE_ARGS) $(ARGS)
	$(MAKE) evaluate-imagenet DATA=$(DATA) PROFILE=$(PROFILE)
	$(MAKE) figures PROFILE=$(PROFILE)

evaluate-imagenet: venv  ## the test protocols (IMAGENET_PROTOCOLS) for every complete ImageNet run under RUN_ROOT (DATA=dir)
	$(require_imagenet)
	$(PY) scripts/evaluate.py --run $(RUN_ROOT)/imagenet*/*/seed* --data-root $(DATA) --protocols $(IMAGENET_PROTOCOLS) $(IMAGENET_EVAL_ARGS)

evaluate-torchvision: venv  ## torchvision's released weights (TV_MODELS, TV_WEIGHTS) under the paper's protocols (DATA=dir)
	$(require_imagenet)
	for m in $(TV_MODELS); do $(PY) scripts/evaluate.py --torchvision $$m --weights $(TV_WEIGHTS) --data-root $(DATA) --protocols $(IMAGENET_PROTOCOLS) $(IMAGENET_EVAL_ARGS) || exit $$?; done

bench: venv  ## the speed benchmark into results/bench/ (ARGS=--quick: every case smaller, 1.5 min on a 2-core AMD EPYC VM; on a GPU also --cuda-graphs, --compile)
	$(PY) scripts/bench.py $(ARGS)

FASHION_MNIST ?=# gpu-check: the folder of Fashion-MNIST's four idx .gz files (default /usr/share/datasets/fashion-mnist)
gpu-check: venv  ## every GPU measurement in one job of at most 8 min on one H100/H200 (FASHION_MNIST=dir; ARGS=--dry-run: on a CPU)
	$(PY) scripts/gpu_check.py $(if $(FASHION_MNIST),--fashion-mnist $(FASHION_MNIST)) $(ARGS)
