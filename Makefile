# Patchwave: the two commands that matter are `make demo` and `make test`.
# Everything else is a building block they use; `make help` lists them.
SHELL := /bin/bash
GO ?= go
# Modules in go.work, in order.
MODULES := $(shell sed -n 's/^[[:space:]]*\.\/\(.*\)$$/\1/p' go.work)

.DEFAULT_GOAL := help
.PHONY: help demo serve bench test test-go fuzz fmt-check vet lint check-domain-imports generate check-generated check-modules check-breaking tools redis awscli build clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

demo: ## run a whole patch cycle on patchd (embedded NATS, simulated fleet) and print the results
	$(GO) run ./services/patchd/cmd/patchd -demo -fresh -data-dir .data/demo -http 127.0.0.1:0 -ops - -nats-port -1

serve: ## run patchd with the demo cycle, then keep serving the API on 127.0.0.1:8080
	$(GO) run ./services/patchd/cmd/patchd -demo -serve -data-dir .data/patchd

bench: ## one wave of BENCH_INSTANCES (default 10000; a list like "10000 20000" runs each and prints the growth) through patchd, with the raw JetStream floor and the ratio (docs/performance.md)
	@scripts/bench.sh

test: tools redis awscli check-generated check-modules fmt-check vet lint test-go fuzz ## every check CI runs: generated code, modules, gofmt, vet, lint, all tests, a short fuzz run

test-go: redis awscli ## the tests of every module (unit, integration and patchd end-to-end)
	@scripts/test.sh $(MODULES)

fuzz: ## run every fuzz target briefly (FUZZTIME per target, default 10s; e.g. make fuzz FUZZTIME=10m)
	@FUZZTIME=$(or $(FUZZTIME),10s) scripts/fuzz.sh

fmt-check: ## fail if gofmt would change a file
	@scripts/fmt-check.sh

vet: ## go vet every module
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done

lint: tools check-domain-imports ## golangci-lint (pinned in scripts/tools/lint) over every module, and the domain import check
	@scripts/lint.sh

check-domain-imports: ## fail if a domain package imports infrastructure (NATS, gRPC, Redis, AWS, HTTP), directly or through libs
	@scripts/check-domain-imports.sh

generate: tools ## regenerate Go, grpc-gateway and OpenAPI code from proto/
	@scripts/generate.sh

check-generated: tools ## fail if the committed generated code differs from a fresh generation
	@scripts/check-generated.sh

check-modules: ## every module builds with GOWORK=off and has a tidy go.mod
	@scripts/check-modules.sh

check-breaking: tools ## buf breaking-change check of proto/ against main
	@scripts/check-breaking.sh

tools: ## build the pinned tools (buf, protoc plugins, golangci-lint) into .bin
	@scripts/tools.sh

redis: ## install redis-server with apt if it is missing (tests need a real one)
	@scripts/ensure-redis.sh

awscli: ## install Debian's awscli (/usr/bin/aws) with apt if it is missing (cloudsim's CLI test runs it)
	@scripts/ensure-awscli.sh

build: ## build every program into .bin
	@set -e; for m in $(MODULES); do case $$m in services/*) (cd $$m && $(GO) build -o ../../.bin/ ./cmd/...);; esac; done

clean: ## remove build output and demo data
	rm -rf .bin .data

.PHONY: bench-compliance
bench-compliance: redis ## compliance figures: rebuild rate into Redis and the summary's p50/p99 under 200 calls/s from a second process (100,000 instances)
	cd services/reporting && $(GO) test -run '^$$' -bench '^BenchmarkCompliance$$' -benchtime 1x -timeout 20m .
