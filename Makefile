# Delivery toolkit: every target sets up what it needs, so each works on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CI := $(BIN)/ci
# Pinned tools are built here (project-local) and cached across clones in CI_TOOLS_CACHE.
TOOLS_DIR ?= $(CURDIR)/.tools/bin
export TOOLS_DIR
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help setup services test test-unit test-e2e lint lint-python lint-imports ci-local clean lock

# Component targets (tools, base images, cluster, docker lint) live in mk/.
-include mk/*.mk
PYTEST ?= $(BIN)/pytest
PYTEST_ARGS ?=

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	hack/ensure-packages.sh $(PYTHON)=python3 python3:ensurepip=python3-venv git=git
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

# The bench scripts are Python executables without a .py suffix: named one by one.
BENCH_PY = $(shell grep -l '^#!/usr/bin/env python3' bench/*)

lint-python: setup
	$(BIN)/ruff check ci tests $(BENCH_PY)
	$(BIN)/ruff format --check ci tests $(BENCH_PY)
	$(BIN)/mypy
	for f in $(BENCH_PY); do $(BIN)/mypy --strict --no-error-summary "$$f"; done

lint-imports: setup ## The package's layers and no import cycle (import-linter, contracts in pyproject.toml)
	$(BIN)/lint-imports --no-cache

lint: lint-python lint-imports lint-docker lint-workflows ## Static checks: ruff, mypy, import layers, hadolint, shellcheck, actionlint, zizmor

# The local pipeline runs the push workflow's commands with ci.local.yaml: ci.yaml plus the local
# registry, the built-in cluster and values-local.yaml; images are built on the local base images.
LOCAL_REGISTRY ?= 127.0.0.1:5000
# The built-in cluster's kubeconfig, where hack/cluster/paths.sh keeps its state (or CI_KUBECONFIG).
CI_KUBECONFIG ?= $(shell bash -c '. hack/cluster/paths.sh && echo "$$cluster_state/kubeconfig"')
LOCAL_PIPELINE_ENV = \
	CI_CONFIG=ci.local.yaml CI_REGISTRY=$(LOCAL_REGISTRY) CI_KUBECONFIG=$(CI_KUBECONFIG) \
	BASE_MAVEN=$(LOCAL_REGISTRY)/base/maven:bookworm BASE_JRE=$(LOCAL_REGISTRY)/base/jre:bookworm \
	BASE_NODE=$(LOCAL_REGISTRY)/base/node:bookworm BASE_NGINX=$(LOCAL_REGISTRY)/base/nginx:bookworm \
	BASE_PGCLIENT=$(LOCAL_REGISTRY)/base/pgclient:bookworm

ci-local: setup services tools base-images cluster-up ## Run the pipeline locally, as the push workflow does
	$(LOCAL_PIPELINE_ENV) $(CI) pipeline run

# The root action installs ci from this file with `pip install --require-hashes`, then the package
# itself with --no-deps --no-build-isolation: pyproject.toml's dependencies and build requirements,
# pinned with the hash of every file PyPI has for each version. LOCK_FLAGS=--upgrade takes newer
# versions; without it the pins stay and only what pyproject.toml changed is resolved again.
LOCK_FILE := requirements/ci.lock
LOCK_FLAGS ?=
lock: setup ## Regenerate requirements/ci.lock (pinned, with hashes) from pyproject.toml
	$(BIN)/pip install --quiet pip-tools
	env -u PIP_FIND_LINKS $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --all-build-deps \
		--strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_FLAGS) \
		--output-file $(LOCK_FILE) pyproject.toml

clean: ## Remove build outputs and the virtualenv (keeps the shared tool cache)
	rm -rf $(VENV) .ci-out .tools .pytest_cache .mypy_cache .ruff_cache *.egg-info
