# actionlint (pinned, built by `ci tools install actionlint`) and zizmor (pinned in the dev extra,
# offline: no GitHub API) on every workflow, the local actions, the root action (action.yml) and
# the Dependabot settings.
# actionlint also runs shellcheck on each `run:` script; zizmor reads .github/zizmor.yml.
ACTIONLINT ?= $(TOOLS_DIR)/actionlint
ZIZMOR ?= $(BIN)/zizmor
ACTIONLINT_SHELLCHECK ?= $(BIN)/shellcheck

.PHONY: lint-workflows

lint-workflows: setup ## actionlint and zizmor --offline on .github (workflows and actions)
	$(CI) tools install actionlint
	$(ACTIONLINT) -shellcheck=$(ACTIONLINT_SHELLCHECK)
	$(ZIZMOR) --offline --no-progress .github action.yml
