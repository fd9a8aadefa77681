# One virtual environment in .venv, installed with the tested pins in constraints.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-all lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job: the flagship scenario on its built-in defaults (about 50 s of CPU time).
demo: $(STAMP)
	$(BIN)/physres run wavepacket --out runs/demo

## The tests CI runs: lint and format check, then every test not marked slow.
test: $(STAMP)
	$(BIN)/ruff check physres tests scenarios benchmarks
	$(BIN)/ruff format --check physres tests scenarios benchmarks
	$(BIN)/python -m pytest -q --durations=20

## Everything, including slow tests.
test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

lint: $(STAMP)
	$(BIN)/ruff check physres tests scenarios benchmarks
	$(BIN)/ruff format --check physres tests scenarios benchmarks

## Reformat the tree (ruff format, the project's formatter).
format: $(STAMP)
	$(BIN)/ruff format physres tests scenarios benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/steppers.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
