# Two entry points for a fresh machine: `make run` serves the explorer,
# `make test` runs the whole suite. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint clean

$(BIN)/relmem: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/relmem
	$(BIN)/pip install --quiet -e '.[test,bench,dask]'
	touch $@

run: $(BIN)/relmem
	$(BIN)/relmem serve

test: $(VENV)/.test-deps
	$(BIN)/pytest

lint: $(VENV)/.test-deps
	$(BIN)/ruff check models app tests bench

clean:
	rm -rf $(VENV) data
