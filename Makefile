# The two commands of the quick start. Each creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test lint bench bench-ray clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "runenv needs Python 3.10+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	cd examples/quickstart && ../../$(BIN)/runenv run --runtime-env runtime_env.yaml -- python main.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check runenv tests bench
	$(BIN)/ruff format --check runenv tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

bench: $(VENV)/.installed-test
	$(BIN)/python bench/code_packaging.py

# runenv on a 2-node Ray cluster it starts (~15-25 min on 2 cores; QUICK=1: a ~4 min smoke run)
bench-ray: $(VENV)/.installed-test
	$(BIN)/python bench/ray_backend.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
