# Set-up and checks. Every target creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg | cksum | cut -d' ' -f1)
DEMO_STAMP := $(VENV)/.demo-installed-$(shell cat setup.cfg | cksum | cut -d' ' -f1)
# A second venv holding the lowest versions install_requires allows (make test-compat).
COMPAT_VENV := .venv-compat
COMPAT_BIN := $(COMPAT_VENV)/bin
COMPAT_STAMP := $(COMPAT_VENV)/.installed-$(shell cat setup.cfg scripts/floors.py | cksum | cut -d' ' -f1)

.PHONY: test test-compat lint typecheck pytest docs demo bench system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	rm -f $(VENV)/.installed-*
	touch $@

# redis-server and chromium are real programs the tests start; install them when root.
system-deps:
	@bash scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# REDIS_URL would point the test project at a Redis of yours; the tests start their own.
pytest: $(STAMP) system-deps
	env -u REDIS_URL $(BIN)/python -m pytest $(PYTEST_ARGS)

# The docs site, built into site/ (git-ignored). --strict fails on any broken link or
# anchor; not --quiet, which hides the warnings --strict counts. The variable silences a
# banner of the theme's.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

test: lint typecheck docs pytest

$(COMPAT_BIN)/python:
	$(PYTHON) -m venv $(COMPAT_VENV)

# Django and redis-py pinned to the floors setup.cfg declares; everything else as usual.
$(COMPAT_STAMP): $(COMPAT_BIN)/python setup.cfg pyproject.toml scripts/floors.py
	$(COMPAT_BIN)/python scripts/floors.py setup.cfg > $(COMPAT_VENV)/floors.txt
	$(COMPAT_BIN)/python -m pip install --quiet --upgrade pip
	$(COMPAT_BIN)/python -m pip install --quiet -c $(COMPAT_VENV)/floors.txt -e '.[test]'
	rm -f $(COMPAT_VENV)/.installed-*
	touch $@

# The test suite on the floor versions (lint and types are make test's).
test-compat: $(COMPAT_STAMP) system-deps
	@echo "Floors: $$(paste -sd' ' $(COMPAT_VENV)/floors.txt)"
	env -u REDIS_URL $(COMPAT_BIN)/python -m pytest $(PYTEST_ARGS)

# The demo needs only its own extra (uvicorn, celery), not the test tools.
$(DEMO_STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	rm -f $(VENV)/.demo-installed-*
	touch $@

demo: $(DEMO_STAMP)
	@bash scripts/demo.sh

bench: $(STAMP) system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(COMPAT_VENV) .mypy_cache .ruff_cache .pytest_cache bench/results site
