# Adopting the toolkit elsewhere: the installable wheel, and the check that a fresh machine sets
# itself up (hack/fresh-machine-check.sh: a container of the local Debian base image, nothing else).
.PHONY: wheel fresh-machine-check

FRESH_TARGET ?= test-unit

wheel: setup ## Build the wheel (ci-delivery-steps, version from the git tag) into dist/
	$(BIN)/pip wheel -q --no-deps -w dist .

fresh-machine-check: ## Copy the checkout into a bare Debian container and run make setup + make $(FRESH_TARGET) there
	hack/fresh-machine-check.sh $(FRESH_TARGET)
