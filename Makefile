# Two commands on a fresh machine with only Python 3.11+, git and make:
#   make demo   creates .venv, installs the tool, runs one hourly job on the built-in simulator into ./data
#   make test   creates .venv with the dev tools, runs ruff, ruff format --check, lint-imports,
#               mypy --strict, pytest
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/ig-story-metrics demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=src $(BIN)/lint-imports

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy --strict src

pytest: $(VENV)/.installed-dev
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(VENV)/.installed-dev
	find bench -name 'bench_*.py' -print -exec $(BIN)/python {} \;

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
