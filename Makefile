# Set-up is part of every target: a fresh clone needs nothing but Python 3.10+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAMPLE := sample_models/k3_bidir_concat.keras

.PHONY: demo test install install-test samples bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files so a re-run does not reinstall; pyproject changes trigger a reinstall.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[keras]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/lstm-inspect show $(SAMPLE)

test: install-test
	$(BIN)/python -m pytest -q

samples: install
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python sample_models/generate.py

clean:
	rm -rf $(VENV) build *.egg-info

bench: install
	$(BIN)/python benchmarks/show_speed.py
