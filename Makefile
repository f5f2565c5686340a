# Two commands: `make run` and `make test`. Both bootstrap ./.venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG := var/tmail.toml

.PHONY: run test lint typecheck clean bench bench-quick fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# editable_mode=compat puts src/ on sys.path, which twistd's plugin discovery needs.
$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

$(CONFIG): | $(STAMP)
	$(BIN)/tmail init var

run: $(STAMP) $(CONFIG)
	$(BIN)/twistd -n --pidfile= tmail --config $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q -m "not slow"

# Long fuzzing run (tests/fuzz with random, many and long inputs; see README "Fuzzing").
# FUZZ_EXAMPLES=n inputs per test (default 20000), FUZZ_SCALE=n how long inputs grow.
fuzz: $(STAMP)
	FUZZ_PROFILE=long $(BIN)/python -m pytest -q -m "" tests/fuzz

# The benchmark harness has its own environment with its peers (aiosmtpd, pymap).
BENCH_VENV := benchmarks/.venv
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): setup.cfg pyproject.toml benchmarks/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e . -r benchmarks/requirements.txt \
		--config-settings editable_mode=compat
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/run.py --size full

bench-quick: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/run.py --size quick

clean:
	rm -rf $(VENV) $(BENCH_VENV) build src/*.egg-info .mypy_cache .ruff_cache
