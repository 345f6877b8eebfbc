# One command each: `make test` and `make book` build the environment themselves when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test unit book sync bench clean distclean

setup: $(STAMP)

# torch first, pinned: the CPU build resolves for it, and nothing later pulls another torch in.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Unit tests, then every chapter through papermill in SMOKE mode, the book built from those
# executed copies, and the pages checked in headless Chromium. Prints each chapter's run time.
test: $(STAMP)
	COMPANION_SMOKE=1 $(PY) -m pytest tests/unit tests/pipeline

unit: $(STAMP)
	COMPANION_SMOKE=1 $(PY) -m pytest tests/unit

# Every chapter executed in full mode, then the HTML book in _build/html.
book: $(STAMP)
	COMPANION_SMOKE=0 $(PY) -m companion.pipeline book

# Regenerate notebooks/*.ipynb (no outputs) from their jupytext .py sources.
sync: $(STAMP)
	$(PY) -m companion.pipeline sync

# Our cores against the libraries production uses, as ratios: bench/results.json and results.md.
bench: $(STAMP)
	$(PY) -m companion.bench

clean:
	rm -rf _build bench .pytest_cache .hypothesis

distclean: clean
	rm -rf $(VENV)
