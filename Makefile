# Two commands set everything up: `make run` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-slow report-check lint clean

install: $(STAMP)

# torch is installed first and pinned so pip never pulls a multi-GB CUDA build;
# pyproject.toml itself accepts a torch range.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,medical,sweep,track]"
	touch $(STAMP)

run: install
	$(BIN)/shortcutlab run --preset quick --out runs/quick

# The suite without the checks that train for minutes (marked `slow`).
test: install
	$(BIN)/python -m pytest -n auto -m "not slow"

# The checks that train for minutes: calibration (each phantom's task is learnable and every
# attribute is learned faster), a Ray sweep surviving a killed worker, grounding on a tiny model.
test-slow: install
	$(BIN)/python -m pytest -n auto -m slow

# The report of a tiny run opened in headless Chromium: it fails on console errors or broken
# images and saves a screenshot. Chromium is installed with apt-get when missing (as root, or
# through sudo without a password); elsewhere install it yourself.
REPORT_SHOT ?= runs/report-check/report.png
report-check: install
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "report-check needs Chromium: install chromium (or chromium-browser) and rerun" >&2; exit 1; fi; }
	rm -f $(REPORT_SHOT)
	SHORTCUTLAB_SCREENSHOT=$(abspath $(REPORT_SHOT)) $(BIN)/python -m pytest -m browser -p no:cacheprovider tests/test_report_browser.py
	@test -s $(REPORT_SHOT) || { echo "no screenshot was written (was the browser test skipped?)" >&2; exit 1; }
	@echo "screenshot: $(REPORT_SHOT) (the page: $(REPORT_SHOT:.png=.html))"

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) runs
