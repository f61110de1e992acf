PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint deps bootstrap bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

bootstrap: $(STAMP)

run: $(STAMP)
	$(BIN)/portside serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

deps:
	./.ci/deps

test: lint deps
	$(BIN)/pytest -q -n 4 --dist loadfile  # a file per worker (module fixtures stay whole); 4: tests mostly wait

bench: $(STAMP) deps
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
