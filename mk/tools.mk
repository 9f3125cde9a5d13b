# Pinned tools: helm 3 and 4, kubectl, kubeconform, actionlint, docker buildx, buildkitd, cosign,
# syft, promtool, postgres_exporter; and the upstream CRD schemas `ci chart validate` uses (crds).
# Built from the Go module proxy into a cache shared by every clone ($(CI_TOOLS_CACHE), default
# ~/.cache/ci-delivery-steps/tools) and linked into $(TOOLS_DIR); tools already at the pinned version are
# skipped, so `make tools` is cheap to repeat. Go builds use go's shared GOCACHE and GOMODCACHE.
.PHONY: tools doctor

# Debian's golang is too old for these modules; the machine's Go lives in /usr/local/go.
GO_HOME ?= /usr/local/go
ifneq ($(wildcard $(GO_HOME)/bin/go),)
export PATH := $(PATH):$(GO_HOME)/bin
endif

tools: setup ## Build the pinned tools into .tools/bin (skips those already at the pinned version)
	@command -v go >/dev/null || echo "tools: note: go not found on PATH or in $(GO_HOME)/bin;" \
	  "tools that are not already built cannot be installed (need Go >= 1.26.8)" >&2
	$(CI) tools install

doctor: setup ## Show which tools are found, their versions and where they come from
	$(CI) doctor
