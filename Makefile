# The two commands a new user needs: `make up` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up down test lint typecheck contracts pytest bootstrap clean

bootstrap:
	@scripts/bootstrap.sh

up: bootstrap
	@$(BIN)/cove up

down:
	@$(BIN)/cove down

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: bootstrap
	$(BIN)/mypy

contracts: bootstrap
	$(BIN)/lint-imports

pytest: bootstrap
	$(BIN)/pytest

# Everything CI runs, in order: lint, types, import contracts, the whole pytest suite.
test: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
