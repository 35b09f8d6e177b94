# Two commands on a fresh machine (only Python >= 3.11 needed): `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install run test lint typecheck pytest bench clean chromium

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "labelhook needs Python >= 3.11 (set PY=python3.x)")'
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## Start web + worker with the demo: signed sample callbacks flow into ./var/out.
run: install
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
