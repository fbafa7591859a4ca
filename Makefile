# Build, check and test indraNet Ingress-Tunnel. `make` alone lists the targets.

# The one place the Bun version is pinned for building and testing (package.json names the same).
BUN_VERSION := 1.4.5

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

TOOLS := .tools
BUN := $(CURDIR)/$(TOOLS)/node_modules/.bin/bun
NODE_BIN := $(CURDIR)/node_modules/.bin
# Touched after each `bun install`: node_modules is reinstalled only when bun.lock or package.json
# is newer.
DEPS := node_modules/.installed

VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || \
	sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' package.json)

ARCHES := x64 arm64
BINARIES := $(foreach p,gateway agent,$(foreach a,$(ARCHES),dist/$(p)-tunnel-linux-$(a)))
SOURCES := $(shell find gateway agent shared -type f ! -name '*.test.ts' 2>/dev/null)
# A shipped binary must not pick up a .env or bunfig.toml from the directory it is started in.
# Bytecode (which requires ESM output) cuts start-up time by a third to a half.
# The JIT policy keeps code that runs only while starting in the interpreter until the binary
# calls startupDone() (shared/cli.ts): compiling it would leave 2-4 MiB resident in an idle process.
BUILD_FLAGS := --compile --minify --bytecode --format=esm --compile-jit-policy=32 \
	--no-compile-autoload-dotenv --no-compile-autoload-bunfig \
	--define 'INDRANET_BUILD_VERSION="$(VERSION)"'

.PHONY: help bun deps proto check-proto lint typecheck fmt test-deps build release test demo bench clean distclean FORCE

help: ## list the targets
	@echo "usage: make <target>   (Bun $(BUN_VERSION), version $(VERSION))"
	@echo "       make test TEST_ARGS='<bun test arguments>'"
	@awk 'BEGIN { FS = ":.*## " } /^[a-z-]+:.*## / { printf "  %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

# npm trusts its own records over a broken or replaced binary, so start from an empty directory.
bun:
	@if [[ "$$($(BUN) --version 2>/dev/null)" != "$(BUN_VERSION)" ]]; then \
	  echo "installing Bun $(BUN_VERSION) into $(TOOLS)/"; \
	  rm -rf $(TOOLS)/node_modules; \
	  npm install --prefix $(TOOLS) --no-save --no-audit --no-fund --loglevel=error \
	    --ignore-scripts=false bun@$(BUN_VERSION); \
	  found=$$($(BUN) --version 2>/dev/null || true); \
	  if [[ "$$found" != "$(BUN_VERSION)" ]]; then \
	    echo "expected Bun $(BUN_VERSION) at $(BUN), found '$$found'" >&2; exit 1; \
	  fi; \
	fi

deps: $(DEPS) ## install the pinned Bun and the project's packages

$(DEPS): bun.lock package.json | bun
	$(BUN) install --frozen-lockfile
	@touch $@

proto: $(DEPS) ## regenerate shared/gen from proto/
	PATH="$(NODE_BIN):$$PATH" buf generate

check-proto: $(DEPS) ## fail when shared/gen is not what proto/ generates
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	PATH="$(NODE_BIN):$$PATH" buf generate --output "$$tmp"; \
	if ! diff -ru shared/gen "$$tmp/shared/gen"; then \
	  echo "generated code is stale: run make proto" >&2; exit 1; \
	fi

lint: $(DEPS) ## biome check, buf lint and buf format check
	$(NODE_BIN)/biome check --error-on-warnings
	$(NODE_BIN)/buf lint
	$(NODE_BIN)/buf format --diff --exit-code

# The inspector page runs in a browser, so it is checked apart, with the DOM's types.
typecheck: $(DEPS) ## tsc --noEmit
	$(NODE_BIN)/tsc --noEmit -p .
	$(NODE_BIN)/tsc --noEmit -p gateway/inspector

fmt: $(DEPS) ## format and fix what biome and buf can fix
	$(NODE_BIN)/biome check --write
	$(NODE_BIN)/buf format --write

test-deps: ## install the system packages the tests need (apt)
	@scripts/install-test-deps.sh

build: $(BINARIES) ## build dist/{gateway,agent}-tunnel-linux-{x64,arm64}

# The checksums cover exactly the four binaries; the x64 one (run here) must report the version.
release: build ## the four binaries plus dist/SHA256SUMS, version embedded
	@[[ "$(VERSION)" != *-dirty ]] || echo "warning: releasing $(VERSION) from uncommitted changes" >&2
	@found=$$(dist/gateway-tunnel-linux-x64 --version 2>/dev/null || true); \
	if [[ "$$(uname -m)" == x86_64 && "$$found" != *"$(VERSION)"* ]]; then \
	  echo "dist/gateway-tunnel-linux-x64 reports '$$found', expected $(VERSION)" >&2; exit 1; \
	fi
	cd dist && sha256sum $(notdir $(BINARIES)) > SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS
	@echo "release $(VERSION) in dist/:"; cat dist/SHA256SUMS

# The binaries embed the version and the Bun runtime: rebuild them when either changes, even
# if no source did. The stamp is rewritten only when its content differs.
dist/.build-id: FORCE
	@mkdir -p $(@D)
	@id="$(VERSION) bun-$(BUN_VERSION)"; \
	[[ -f $@ && "$$(< $@)" == "$$id" ]] || echo "$$id" > $@

dist/%-tunnel-linux-x64: %/main.ts $(SOURCES) $(DEPS) dist/.build-id tsconfig.json bunfig.toml
	$(BUN) build $< --target=bun-linux-x64 $(BUILD_FLAGS) --outfile $@

dist/%-tunnel-linux-arm64: %/main.ts $(SOURCES) $(DEPS) dist/.build-id tsconfig.json bunfig.toml
	$(BUN) build $< --target=bun-linux-arm64 $(BUILD_FLAGS) --outfile $@

gateway/main.ts agent/main.ts:
	@echo "$@ is missing: it is the entry point of the binary" >&2; exit 1

test: deps test-deps check-proto lint typecheck build ## all checks, the binaries, then every test
	BUN=$(BUN) scripts/run-tests.sh $(TEST_ARGS)

demo: $(DEPS) ## run a gateway, an agent and a service locally
	$(BUN) scripts/demo.ts

bench: $(DEPS) build ## measure throughput and latency through the tunnel
	$(BUN) scripts/bench.ts

clean: ## remove build output
	rm -rf dist tmp/test.log
	rm -f .*.bun-build

distclean: clean ## also remove node_modules and the pinned Bun
	rm -rf node_modules $(TOOLS)

FORCE:
