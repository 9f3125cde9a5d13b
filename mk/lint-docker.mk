# hadolint on every Dockerfile, shellcheck on every shell script of the images and the test machinery.
HADOLINT ?= $(BIN)/hadolint
SHELLCHECK ?= $(BIN)/shellcheck
LINT_DOCKERFILES = $(sort $(wildcard dockerfiles/*.Dockerfile) \
	$(shell find hack -name Dockerfile -not -path '*/node_modules/*' 2>/dev/null))
LINT_SCRIPTS = $(sort $(wildcard dockerfiles/*.sh) \
	$(shell find hack -name '*.sh' -not -path '*/node_modules/*' 2>/dev/null))

.PHONY: lint-docker

lint-docker: setup ## hadolint on the Dockerfiles, shellcheck on the shell scripts
	$(HADOLINT) $(LINT_DOCKERFILES)
	$(SHELLCHECK) -x $(LINT_SCRIPTS)
