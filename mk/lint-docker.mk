# hadolint on every Dockerfile, shellcheck on every shell script of the images and the test machinery.
HADOLINT ?= $(BIN)/hadolint
SHELLCHECK ?= $(BIN)/shellcheck
LINT_DOCKERFILES = $(sort $(wildcard dockerfiles/*.Dockerfile) \
	$(shell find hack -name Dockerfile -not -path '*/node_modules/*' 2>/dev/null))
LINT_SCRIPTS = $(sort $(wildcard dockerfiles/*.sh) \
	$(shell find hack -name '*.sh' -not -path '*/node_modules/*' 2>/dev/null))

.PHONY: lint-docker

# Both tools always run, so one report shows every finding; the target fails if either found one.
lint-docker: setup ## hadolint on the Dockerfiles, shellcheck on the shell scripts
	@status=0; \
	$(HADOLINT) $(LINT_DOCKERFILES) || status=1; \
	$(SHELLCHECK) --external-sources --source-path=SCRIPTDIR $(LINT_SCRIPTS) || status=1; \
	if [ $$status -eq 0 ]; then \
	  echo "lint-docker: $(words $(LINT_DOCKERFILES)) Dockerfiles, $(words $(LINT_SCRIPTS)) scripts clean"; \
	fi; \
	exit $$status
