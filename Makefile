# cvops — `make demo` and `make test` are the two commands of the quick start.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
CVOPS := $(VENV)/bin/cvops
STAMP := $(VENV)/.installed-stamp
DATASET ?= elpv

# The default demo imports ELPV and trains with params.yaml; the one-minute digits demo trains the small run
# of overlays/digits.yaml, which is applied for that run only: params.yaml is the same afterwards.
# (cvops, the tests and the benchmarks set their offline switches themselves: cvops/env.py OFFLINE_ENV.)
# ELPV holds many pairs of solar cells alike to the pixel at 128 px (neighbouring wafers of one ingot): the data
# audit names them (reports/audit.html), and the demo's gate does not count them (docs: Data audit).
DEMO_elpv := $(CVOPS) data import elpv && $(CVOPS) run training -S gate.max_leakage=null
DEMO_digits := $(CVOPS) run training --overlay overlays/digits.yaml
# The detection demo: scenes composed from real MNIST digits; the import sets `task: detection` in params.yaml
# (`make demo` sets it back to classification with its ELPV import).
DEMO_digit-scenes := $(CVOPS) data import digit-scenes && $(CVOPS) run training --overlay overlays/digit-scenes.yaml

.PHONY: help install system-deps label-studio litert demo test test-fast lint docs docs-serve format ui bench lock clean-state team-up team-down

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: DATASET=elpv|digits|digit-scenes (demo), PORT (ui; unset: cvops ui's default)"

# uv installs the pinned set (7 GB: torch's CUDA build) in about 40 s where pip took 2 min 20 s, compiling the
# bytecode as pip does (with PYTHONDONTWRITEBYTECODE set, as on CI, every process would compile its imports
# again: the suite took twice as long). uv reads no pip.conf, so pip's configured sources (an index mirror,
# extra indexes, a folder of wheels) are handed to it, searched together as pip searches them
# (unsafe-best-match: the best version of any index, not the first's).
PIP_SOURCES = $(PY) -m pip config list | sed -nE "s/^[^.]*\.(index-url|extra-index-url|find-links)='(.*)'$$/\1 \2/p" \
	| awk '{for (i = 2; i <= NF; i++) printf "--%s %s ", $$1, $$i}'

$(STAMP): pyproject.toml requirements.lock overrides.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25"
	$(PY) -m pip install --quiet -c requirements.lock uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode --index-strategy unsafe-best-match \
		$$($(PIP_SOURCES)) \
		-c requirements.lock --override overrides.txt -e ".[dev,coreml,litert]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install every pinned dependency

# The system packages cvops uses (cvops/stack/doctor.py: SYSTEM_PACKAGES), the missing ones only: Debian's apt.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
system-deps: install ## Install the missing system packages (git, Chromium, Fashion-MNIST); `cvops doctor` checks them
	@missing="$$($(CVOPS) doctor --apt)"; \
	if [ -z "$$missing" ]; then echo "system packages: all installed"; \
	else $(SUDO) apt-get install -y --no-install-recommends $$missing; fi

# Label Studio in a virtual environment of its own (a Django app whose pins clash with cvops's): the labels
# round trip runs against it (tests/integration/test_loop.py), and `cvops labels studio` talks to any server.
LABEL_STUDIO_VENV := .venv-label-studio
$(LABEL_STUDIO_VENV)/.installed-stamp: infra/label-studio/requirements.lock $(STAMP)
	@test -x $(LABEL_STUDIO_VENV)/bin/python || $(VENV)/bin/uv venv --quiet --python $(PYTHON) $(LABEL_STUDIO_VENV)
	$(VENV)/bin/uv pip install --quiet --python $(LABEL_STUDIO_VENV)/bin/python --index-strategy unsafe-best-match \
		$$($(PIP_SOURCES)) -r infra/label-studio/requirements.lock
	@touch $@

label-studio: $(LABEL_STUDIO_VENV)/.installed-stamp ## Install Label Studio 1.23 into .venv-label-studio

# onnx2tf and TensorFlow in a virtual environment of their own (their numpy, protobuf and onnx pins clash with
# cvops's): the litert export target runs its onnx2tf (CVOPS_ONNX2TF; tests/model/test_targets.py).
LITERT_VENV := .venv-litert
$(LITERT_VENV)/.installed-stamp: infra/litert/requirements.lock $(STAMP)
	@test -x $(LITERT_VENV)/bin/python || $(VENV)/bin/uv venv --quiet --python $(PYTHON) $(LITERT_VENV)
	$(VENV)/bin/uv pip install --quiet --python $(LITERT_VENV)/bin/python --index-strategy unsafe-best-match \
		$$($(PIP_SOURCES)) -r infra/litert/requirements.lock
	@touch $@

litert: $(LITERT_VENV)/.installed-stamp ## Install onnx2tf 1.29 + TensorFlow 2.19 into .venv-litert (the litert target)

demo: install ## Init, import DATASET (elpv, digits, or digit-scenes: detection) and run the training pipeline
	@test -n "$(DEMO_$(DATASET))" || { echo "make demo: DATASET must be elpv, digits or digit-scenes" >&2; exit 2; }
	$(CVOPS) init
	$(DEMO_$(DATASET))

# Two workers, a test file each at a time (a file's fixtures are built once); tests/conftest.py hands out the
# slowest files first. Many tests wait on servers and subprocesses, so two workers pay off on two cores; a third
# did not (docs/development.md).
test: install system-deps label-studio litert ## Run the whole test suite (two workers)
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder

test-fast: install ## Unit tests only (seconds)
	$(PY) -m pytest tests/unit -m "not slow"

lint: install ## ruff check + format check + mypy on cvops/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy cvops

# The docs site (mkdocs.yml): --strict fails on a broken link, anchor or picture, or a page outside the nav. The
# reference pages are generated from the code as it builds (docs/hooks/reference.py); then every page is opened
# in headless Chromium (no console error; pictures and internal links resolve).
MKDOCS := NO_MKDOCS_2_WARNING=1 PYTHONWARNINGS=ignore::DeprecationWarning $(VENV)/bin/mkdocs
docs: install ## Build the docs site into site/ (mkdocs --strict), then check every page in Chromium
	$(MKDOCS) build --strict
	$(PY) docs/check_site.py site

docs-serve: install ## Serve the docs site on http://127.0.0.1:8000 with live reload
	$(MKDOCS) serve --strict --dev-addr 127.0.0.1:8000

format: install ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

ui: install ## MLflow UI on 127.0.0.1 (PORT=N for another port)
	$(CVOPS) ui $(if $(PORT),--port $(PORT))

team-up: install ## Start a team stack on this machine (databases, S3, MLflow + ZenML servers); writes .team/env
	$(CVOPS) team up

team-down: install ## Stop the team stack (its state stays in .team/ and its databases)
	$(CVOPS) team down

bench: install litert ## Run the benchmarks in bench/ (each prints a table, writes bench/results/*.json)
	$(PY) bench/data.py
	$(PY) bench/pipeline.py
	$(PY) bench/quantization.py
	$(PY) bench/detection.py --picture docs/detection-boxes.png
	$(PY) bench/video.py
	$(PY) bench/decoding.py
	$(PY) bench/targets.py
	$(PY) bench/detectors.py
	$(PY) bench/distill.py
	$(PY) bench/compression.py
	$(PY) bench/latency.py
	$(PY) bench/serving.py
	$(PY) bench/audit.py
	$(PY) bench/drift.py
	$(PY) bench/drift.py --dataset fashion-mnist
	$(PY) bench/team.py
	$(PY) bench/distributed.py

lock: ## Re-resolve requirements.lock from pyproject.toml in a scratch venv
	rm -rf /tmp/cvops-lock && $(PYTHON) -m venv /tmp/cvops-lock
	$(VENV)/bin/uv pip install --quiet --python /tmp/cvops-lock/bin/python --index-strategy unsafe-best-match \
		$$($(PIP_SOURCES)) --override overrides.txt ".[dev,coreml,litert]"
	/tmp/cvops-lock/bin/pip freeze --exclude cvops | sed '1i # Full pinned dependency tree of cvops (pip constraints). Regenerate: make lock' > requirements.lock

clean-state: ## Delete local state (data, stores, checkpoints); `cvops init` starts clean
	rm -rf data mlflow/mlflow.db mlflow/artifacts .zen .dvc/cache checkpoints reports monitoring bentos
