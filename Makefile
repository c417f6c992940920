# Dunning platform — run `make help` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv is bootstrapped into ./.tools when the machine does not have it.
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
export UV_PROJECT_ENVIRONMENT ?= $(CURDIR)/.venv

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(UV):
	@scripts/bootstrap-uv.sh

.PHONY: install
install: $(UV) ## Create .venv with every workspace package and dev tool
	@$(UV) sync --all-packages --frozen 2>/dev/null || $(UV) sync --all-packages

.PHONY: run
run: install ## Start all four services on embedded defaults (ports DUNNING_BASE_PORT..+3, default 8001-8004; data in ./var; manual clock unless DUNNING_CLOCK)
	@$(UV) run --no-sync dunning up

.PHONY: test
test: install ## Run the test suite (embedded backends unless DUNNING_BUS_URL/DUNNING_DATABASE_URL say otherwise)
	@$(UV) run --no-sync pytest $(PYTEST_ARGS)

.PHONY: e2e
e2e: install ## End-to-end tests only: the four services as processes, a real SMTP server (backend as for `make test`)
	@$(UV) run --no-sync pytest tests/e2e $(PYTEST_ARGS)

.PHONY: faults
faults: install ## Fault-injection suite alone: its own Kafka (19192) and PostgreSQL (15532), faults under load; writes var/faults/summary.json
	@FAULTS=1 $(UV) run --no-sync pytest tests/faults -s -p no:cacheprovider $(PYTEST_ARGS)

.PHONY: lint
lint: install ## ruff (lint + format check) and mypy
	@$(UV) run --no-sync ruff check .
	@$(UV) run --no-sync ruff format --check .
	@$(UV) run --no-sync mypy libs/events/src libs/runtime/src libs/cli/src services/*/src benchmarks

.PHONY: format
format: install ## Apply ruff formatting and safe fixes
	@$(UV) run --no-sync ruff check --fix .
	@$(UV) run --no-sync ruff format .

.PHONY: schemas
schemas: install ## Regenerate the committed JSON Schemas and AsyncAPI document from the event models
	@$(UV) run --no-sync python -m dunning_events.generate

.PHONY: bench
bench: install ## Benchmarks on the configured backends: prints a table, writes bench/results.json (BENCH_ARGS=--help)
	@$(UV) run --no-sync python -m benchmarks $(BENCH_ARGS)

.PHONY: kafka-up
kafka-up: ## Start a real Apache Kafka broker (KRaft, single node) on 127.0.0.1:9092 from Maven Central jars
	@scripts/kafka.sh up

.PHONY: kafka-down
kafka-down: ## Stop the local Kafka broker
	@scripts/kafka.sh down

.PHONY: pg-up
pg-up: ## Start a local PostgreSQL on 127.0.0.1:5432 (installs Debian's package if missing)
	@scripts/pg.sh up

.PHONY: pg-down
pg-down: ## Stop the local PostgreSQL
	@scripts/pg.sh down

.PHONY: clean
clean: ## Remove ./var (embedded data) and caches
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
