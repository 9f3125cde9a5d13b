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

.PHONY: help setup services tools test lint ci-local clean

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

clean: ## Remove build outputs and the virtualenv (keeps the shared tool cache)
	rm -rf $(VENV) .ci-out .tools .pytest_cache .mypy_cache .ruff_cache *.egg-info

-include mk/*.mk
