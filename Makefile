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

.PHONY: app test lint format bench sysdeps clean

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

# System packages the tests need, from Debian, installed only when missing and only where root apt-get
# can run: Chromium for the browser tests (a test tool's own browser download cannot work here),
# PostgreSQL server binaries for the PostgreSQL store tests (the tests start their own throwaway
# server on 127.0.0.1), and the FFmpeg libraries torchcodec needs when `datasets` reads audiofolders.
SYSDEPS_CHECK := \
	{ [ -x /usr/bin/chromium ] || echo chromium; } ; \
	{ ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || echo postgresql; } ; \
	{ ls /usr/lib/*/libavcodec.so.* >/dev/null 2>&1 || echo "libavcodec59 libavformat59 libavutil57 libswresample4 libavdevice59 libavfilter8 libswscale6"; }

sysdeps:
	@missing="$$( $(SYSDEPS_CHECK) )"; missing="$$(echo $$missing)"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages: $$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) \
	      || echo "apt-get failed: tests that need $$missing will be skipped"; \
	  else echo "missing $$missing and no root apt-get: tests that need them will be skipped"; fi; \
	fi

test: $(TEST_STAMP) sysdeps
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
