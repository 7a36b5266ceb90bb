# Two commands: `make app` (set up and serve the Space locally) and `make test` (set up and run the suite).
# Both are idempotent: the venv is created once, and requirements are reinstalled only when the
# requirements files change (the stamp's name carries their hash).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQ_HASH := $(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
TEST_HASH := $(shell cat requirements.txt requirements-test.txt pyproject.toml | sha256sum | cut -c1-16)
APP_STAMP := $(VENV)/.stamp-app-$(REQ_HASH)
TEST_STAMP := $(VENV)/.stamp-test-$(TEST_HASH)

.PHONY: app test lint format bench browser postgres clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(APP_STAMP): | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(TEST_STAMP): $(APP_STAMP)
	$(BIN)/pip install -q -r requirements-test.txt
	touch $@

app: $(APP_STAMP)
	$(BIN)/python app.py

# Chromium comes from Debian (a test tool's own browser download cannot work here);
# installed only when missing and only where apt-get can run.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium install failed: browser tests will be skipped"; \
	  else echo "no /usr/bin/chromium and no root apt-get: browser tests will be skipped"; fi; \
	fi

# PostgreSQL server binaries from Debian for the PostgreSQL vote-store tests; the tests start and stop
# their own throwaway server on 127.0.0.1.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	      || echo "postgresql install failed: PostgreSQL store tests will be skipped"; \
	  else echo "no PostgreSQL server binaries and no root apt-get: PostgreSQL tests will be skipped"; fi; \
	fi

test: $(TEST_STAMP) browser postgres
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(TEST_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(TEST_STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
