# Two commands on a fresh machine (only Python >= 3.11 needed): `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUM := $(shell cksum pyproject.toml | cut -d' ' -f1)
# Two installs: `make run` needs only the runtime dependencies (a small venv, a quick first run);
# `make test` and `make install` add the dev extras (pytest, moto, playwright, mypy, cfn-lint…).
RUN_STAMP := $(VENV)/.runtime-$(SUM)
DEV_STAMP := $(VENV)/.dev-$(SUM)
PIP := $(BIN)/python -m pip install --disable-pip-version-check --progress-bar on

.PHONY: install install-runtime run test lint typecheck pytest bench clean chromium

$(BIN)/python:
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "labelhook needs Python >= 3.11 (set PY=python3.x)")'
	$(PY) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@echo "== installing labelhook and its runtime dependencies into $(VENV) (once; later runs skip this)"
	$(PIP) -e .
	rm -f $(VENV)/.runtime-* && touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	@echo "== installing labelhook with the dev extras into $(VENV)"
	$(PIP) -e '.[dev]'
	rm -f $(VENV)/.dev-* $(VENV)/.runtime-* $(VENV)/.installed-* && touch $(DEV_STAMP) $(RUN_STAMP)

install: $(DEV_STAMP)

install-runtime: $(RUN_STAMP)

## Start web + worker with the demo: signed sample callbacks flow into ./var/out; the terminal says
## where the outputs and the dashboard are once it is up.
run: install-runtime
	$(BIN)/labelhook run --demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy receiver processors

## The browser test drives Debian's chromium (never a downloaded browser); install it when root.
chromium:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
		echo "chromium not installed: tests/test_browser.py will be skipped"

pytest: install chromium
	$(BIN)/pytest -q

## The whole suite: lint, types (strict on receiver/ and processors/), tests.
test: lint typecheck pytest

bench: install
	$(BIN)/python bench/decode.py
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
