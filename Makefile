# Two commands: `make run` and `make test`. Both bootstrap ./.venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG := var/tmail.toml

.PHONY: run test lint typecheck clean

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
	$(BIN)/ruff check src tests examples

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info .mypy_cache .ruff_cache
