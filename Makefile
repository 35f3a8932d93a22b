# kubesift — run `make help` for the targets.
SHELL := /usr/bin/env bash
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
# The commit, "-dirty" when the tree has uncommitted changes, and the build
# time (UTC), printed by `kubesift version` (cmd/kubesift/version.go).
COMMIT ?= $(shell c=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null || c=$$c-dirty; echo $$c; })
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(BUILD_DATE)

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/kubesift
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kubesift ./cmd/kubesift

.PHONY: test
test: ## everything: lint, start the real test ground, all tests (-race -shuffle=on), fuzz briefly, stop the ground
	hack/test.sh

.PHONY: test-unit
test-unit: ## fast tests only (no servers; integration tests skip)
	$(GO) test -race -shuffle=on -short ./...

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (default 10s) each
	hack/fuzz.sh

.PHONY: lint
lint: tidy-check ## go vet, gofmt check, staticcheck (pinned)
	$(GO) vet ./...
	cd test/deploy && $(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	cd test/deploy && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

.PHONY: tidy-check
tidy-check: ## go.mod and go.sum are tidy (every module)
	$(GO) mod tidy -diff
	cd test/tools && $(GO) mod tidy -diff
	cd test/tools/alertmanager && $(GO) mod tidy -diff
	cd test/tools/mailpit && $(GO) mod tidy -diff
	cd test/deploy && $(GO) mod tidy -diff

.PHONY: kibana
kibana: ## regenerate deployments/kibana/kubesift.ndjson from the dashboards in sink/kibana
	$(GO) generate ./sink/kibana

# BENCH_BASE is the commit whose `kubesift rules eval` hack/bench-eval.sh
# measures beside this tree's: kubesift with json-iterator's reflective
# decoders, before the hand-written audit decoder and body parser.
BENCH_BASE ?= 3d2850b

.PHONY: bench
bench: ## run the benchmarks and print their figures, then decode + rules in records/CPU-s beside BENCH_BASE
	$(GO) test -run '^$$' -bench . -benchmem ./...
	hack/bench-eval.sh $(BENCH_BASE)

.PHONY: testenv-up
testenv-up: ## start kube-apiserver+etcd, Kafka and Elasticsearch on loopback (builds/installs on first use)
	hack/testenv/up.sh

.PHONY: testenv-down
testenv-down: ## stop the test ground (data kept; `hack/testenv/down.sh --clean` removes it)
	hack/testenv/down.sh
