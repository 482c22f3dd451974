# Two commands on a fresh machine with only Python 3.11+, git and make:
#   make demo   creates .venv, installs the tool, runs one hourly job on the built-in simulator into ./data
#   make test   creates .venv with the dev tools, runs ruff, ruff format --check, lint-imports,
#               mypy --strict, pytest
# Both install the runtime dependencies at the versions pinned in deployment/constraints.txt, the
# ones a deploy ships; `make constraints` pins them anew from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

CONSTRAINTS := deployment/constraints.txt

.PHONY: demo test lint typecheck pytest bench clean constraints

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
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

# Pin the runtime dependencies (and theirs) for deploys, from a fresh venv: see the script.
constraints:
	deployment/pin_dependencies.sh $(PYTHON)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
