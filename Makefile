# Set-up and checks. Every target creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg | cksum | cut -d' ' -f1)
DEMO_STAMP := $(VENV)/.demo-installed-$(shell cat setup.cfg | cksum | cut -d' ' -f1)

.PHONY: test lint typecheck pytest demo bench soak system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
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

test: lint typecheck pytest

# The demo needs only its own extra (uvicorn, celery), not the test tools.
$(DEMO_STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	rm -f $(VENV)/.demo-installed-*
	touch $@

demo: $(DEMO_STAMP)
	@bash scripts/demo.sh

# uvloop and httptools (uvicorn[standard]) for the streams benchmark's comparison of
# uvicorn with and without them.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet 'uvicorn[standard]'
	touch $@

# BENCH=engine runs only the engine's figures, BENCH=streams only streams at scale
# (python -m bench.sse); BENCH_ARGS are passed on (e.g. BENCH_ARGS=--quick).
BENCH ?= all
bench: $(BENCH_STAMP) system-deps
ifneq ($(BENCH),streams)
	$(BIN)/python -m bench $(BENCH_ARGS)
endif
ifneq ($(BENCH),engine)
	$(BIN)/python -m bench.sse $(BENCH_ARGS)
endif

# Redis killed with -9 and restarted every 60 s under 500 streams; SOAK_SECONDS long.
SOAK_SECONDS ?= 600
soak: $(BENCH_STAMP) system-deps
	$(BIN)/python -m bench.sse.soak --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bench/results
