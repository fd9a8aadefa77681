# One virtual environment in .venv, installed with the tested pins in constraints.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-all lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job: the flagship scenario, its built-in quick preset (~40 s on 2 CPU cores).
## Without --quick it runs the full size, which is meant for a GPU.
demo: $(STAMP)
	$(BIN)/physres run wavepacket --quick --out runs/demo

## The tests CI runs: lint, then every test not marked slow.
test: $(STAMP)
	$(BIN)/ruff check physres tests scenarios benchmarks
	$(BIN)/python -m pytest -q

## Everything, including slow tests.
test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

lint: $(STAMP)
	$(BIN)/ruff check physres tests scenarios benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/steppers.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
