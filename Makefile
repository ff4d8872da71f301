# scimsync: `make run` to try it, `make test` to test it. Everything runs on 127.0.0.1.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STACK := deploy/local/stack
export DATABASE_URL ?= postgresql://scimsync:scimsync@127.0.0.1:55432/scimsync
export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:59092

.PHONY: install run test unit faults faults-down lint bench stack-up stack-down stack-status migrate clean

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

stack-up:
	$(STACK) up

stack-down:
	$(STACK) down

stack-status:
	$(STACK) status

migrate: install stack-up
	$(BIN)/scimsync migrate

## run: the local stack, migrations, every process, and the demo tenant's SCIM Base URL and token.
run: install stack-up migrate
	deploy/local/run

## test: the whole suite against the real Postgres and Kafka of the local stack (tests/faults brings its own).
test: install stack-up
	$(BIN)/pytest

## faults: only the fault suite; it starts (and stops) its own Postgres + Kafka on ports 25432/29092/29093.
faults: install
	$(BIN)/pytest tests/faults

## unit: the pure tests only (no I/O, seconds).
unit: install
	$(BIN)/pytest tests/unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## bench: every benchmark (JSON lines); `make bench BENCH="api relay"` for some of them. Needs wrk.
bench: install stack-up
	@command -v wrk >/dev/null || (echo "make bench needs wrk: apt-get install wrk" >&2; exit 1)
	$(BIN)/python -m bench $(BENCH)

## faults-down: stop the fault suite's private stack (the suite stops it itself; this is for an interrupted run).
faults-down:
	SCIMSYNC_STACK_DIR=deploy/local/.state/faults PGPORT_LOCAL=25432 KAFKA_PORT_LOCAL=29092 \
		KAFKA_CONTROLLER_PORT_LOCAL=29093 $(STACK) down

clean: stack-down faults-down
	rm -rf $(VENV) deploy/local/.state
