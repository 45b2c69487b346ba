# Set-up and checks. Every target creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg | cksum | cut -d' ' -f1)
DEMO_STAMP := $(VENV)/.demo-installed-$(shell cat setup.cfg | cksum | cut -d' ' -f1)

.PHONY: test lint typecheck pytest docs demo bench system-deps clean

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
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bench/results site
