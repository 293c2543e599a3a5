# Two commands set everything up: `make run` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-slow lint clean

install: $(STAMP)

# torch is installed first and pinned so pip never pulls a multi-GB CUDA build;
# pyproject.toml itself accepts a torch range.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,medical]"
	touch $(STAMP)

run: install
	$(BIN)/shortcutlab run --preset quick --out runs/quick

# The suite without the calibration checks that train for minutes (marked `slow`).
test: install
	$(BIN)/python -m pytest -n auto -m "not slow"

# The calibration checks: each phantom's task is learnable and every attribute is learned faster.
test-slow: install
	$(BIN)/python -m pytest -n auto -m slow

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) runs
