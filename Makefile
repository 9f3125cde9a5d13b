# Delivery toolkit: every target sets up what it needs, so each works on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CI := $(BIN)/ci
# Pinned tools are built here (project-local) and cached across clones in TOOLS_CACHE.
TOOLS_DIR ?= $(CURDIR)/.tools/bin
export TOOLS_DIR
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help setup services test test-unit test-e2e lint lint-python ci-local clean

# Component targets (tools, base images, cluster, docker lint) live in mk/.
-include mk/*.mk
PYTEST ?= $(BIN)/pytest
PYTEST_ARGS ?=

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed ## Create the virtualenv with the package and its dev tools

services: ## Start the Docker daemon and the local registry (idempotent)
	hack/dockerd.sh
	hack/registry.sh up

test: setup services tools base-images ## Set up everything and run the unit and integration tests
	$(PYTEST) -m "not e2e" $(PYTEST_ARGS)

test-unit: setup ## Run the fast unit tests only (no tools or services)
	$(PYTEST) tests/unit $(PYTEST_ARGS)

test-e2e: setup services tools base-images cluster-up ## Run the end-to-end tests on the local cluster
	$(PYTEST) -m e2e $(PYTEST_ARGS)

lint-python: setup
	$(BIN)/ruff check ci tests bench
	$(BIN)/ruff format --check ci tests bench
	$(BIN)/mypy

lint: lint-python lint-docker ## Static checks: ruff, mypy, hadolint, shellcheck

ci-local: setup services tools base-images ## Run the pipeline locally, as the push workflow does
	$(CI) config validate

clean: ## Remove build outputs and the virtualenv (keeps the shared tool cache)
	rm -rf $(VENV) .ci-out .tools .pytest_cache .mypy_cache .ruff_cache *.egg-info
