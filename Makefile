# The two commands of the README: `make run` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test check lint typecheck browser monitoring unit integration e2e clean

RUN_STAMP := $(VENV)/.run-stamp

# The tests' tools (dev extra): mypy, playwright, schemathesis, ...
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP) $(RUN_STAMP)

# What running the pipeline needs, and nothing more.
$(RUN_STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	@touch $(RUN_STAMP)

install: $(STAMP)

## Pin what the dev environment resolved to (after changing pyproject.toml's dependencies).
.PHONY: constraints
constraints: install
	@{ sed -n 1,2p constraints.txt; $(BIN)/python -m pip freeze --exclude-editable \
	  | grep -v -e '^hopline' -e '^setuptools=='; } > constraints.txt.new && mv constraints.txt.new constraints.txt

## Run the pipeline: broker (yours via HOPLINE_AMQP_URL, or a private node), producer, consumer.
run: $(RUN_STAMP)
	$(BIN)/python -m deploy.local.run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

## Chromium for the admin page's browser test (Debian's package, installed once as root).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "make: no chromium and not root: the admin page's browser test will be skipped"

## Prometheus and promtool for the monitoring tests (Debian's package, installed once as root).
monitoring:
	@command -v promtool >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
	  || echo "make: no prometheus and not root: the monitoring tests will be skipped"

## Lint, type-check and run every test tier against a real RabbitMQ.
test: lint typecheck browser monitoring
	$(BIN)/pytest

check: test

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

e2e: install
	$(BIN)/pytest tests/e2e

clean:
	rm -rf $(VENV) .hopline .mypy_cache .ruff_cache .pytest_cache

## Benchmarks on a private RabbitMQ node, hopline next to the raw client (README, "Performance").
.PHONY: bench
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## Fault scenarios on private RabbitMQ nodes, with a table per scenario (README, "Reliability").
.PHONY: chaos
chaos: install
	HOPLINE_CHAOS_REPORT=$${HOPLINE_CHAOS_REPORT:-.hopline/chaos-$$(date +%Y%m%d-%H%M%S).jsonl}; \
	mkdir -p .hopline; export HOPLINE_CHAOS_REPORT; \
	$(BIN)/pytest -m chaos tests/chaos -p no:cacheprovider; status=$$?; \
	echo "results: $$HOPLINE_CHAOS_REPORT"; exit $$status
