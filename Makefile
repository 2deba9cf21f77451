# cvops — `make demo` and `make test` are the two commands of the quick start.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
CVOPS := $(VENV)/bin/cvops
STAMP := $(VENV)/.installed-stamp
DATASET ?= elpv
PORT ?= 5000

# Offline switches for every tool the Makefile starts (the CLI sets them for itself too).
export ZENML_ANALYTICS_OPT_IN := false
export NO_ALBUMENTATIONS_UPDATE := 1
export HF_HUB_OFFLINE := 1

# The 30-second demo: digits are 8x8 and not flip-invariant, so a small model from scratch, no flips.
DEMO_SET_digits := -S prepare.image_size=32 -S train.model=resnet18 -S train.pretrained=none \
	-S train.freeze_backbone_epochs=0 -S train.lr=0.002 -S train.epochs=6 -S train.augment.hflip=0 \
	-S train.augment.vflip=0 -S train.augment.rotate90=0 -S train.augment.shift_scale_rotate=0 \
	-S gate.min_invariance.hflip=null
DEMO_SET_elpv :=

.PHONY: help install demo test test-fast lint format ui bench lock clean-state

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: DATASET=elpv|digits (demo), PORT=5000 (ui)"

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25"
	$(PY) -m pip install --quiet -c requirements.lock -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install every pinned dependency

demo: install ## Init, import DATASET (default elpv) and run the training pipeline
	$(CVOPS) init
	$(CVOPS) data import $(DATASET)
	$(CVOPS) run training $(DEMO_SET_$(DATASET))

test: install ## Run the whole test suite
	$(PY) -m pytest

test-fast: install ## Unit tests only (seconds)
	$(PY) -m pytest tests/unit -m "not slow"

lint: install ## ruff check + format check + mypy on cvops/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy cvops

format: install ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

ui: install ## MLflow UI on http://127.0.0.1:$(PORT)
	$(CVOPS) ui --port $(PORT)

bench: install ## Run the benchmarks in bench/ (each prints a table, writes bench/results/*.json)
	$(PY) bench/data.py
	$(PY) bench/pipeline.py
	$(PY) bench/quantization.py
	$(PY) bench/serving.py
	$(PY) bench/drift.py
	$(PY) bench/drift.py --dataset fashion-mnist

lock: ## Re-resolve requirements.lock from pyproject.toml in a scratch venv
	rm -rf /tmp/cvops-lock && $(PYTHON) -m venv /tmp/cvops-lock
	/tmp/cvops-lock/bin/pip install --quiet ".[dev]"
	/tmp/cvops-lock/bin/pip freeze --exclude cvops | sed '1i # Full pinned dependency tree of cvops (pip constraints). Regenerate: make lock' > requirements.lock

clean-state: ## Delete local state (data, stores, checkpoints); `cvops init` starts clean
	rm -rf data mlflow/mlflow.db mlflow/artifacts .zen .dvc/cache checkpoints reports monitoring bentos
