# Set-up is part of every target: a fresh clone needs nothing but Python 3.10+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAMPLE := sample_models/k3_bidir_concat.keras

.PHONY: demo test fuzz install install-test samples bench clean readme

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files so a re-run does not reinstall; pyproject changes trigger a reinstall.
# The core alone (numpy, h5py, typer, rich): every command but verify; no TensorFlow.
$(VENV)/.installed-core: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# What a user installs for every command: the core plus Keras (verify) and matplotlib (plot).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[keras,plot]"
	touch $@

# torch is optional (its tests and benchmark columns need it): installed only where a CPU build
# lies on this machine's disk, so `make test` never downloads a multi-GB CUDA build.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,plot]"
	if ls $${PIP_FIND_LINKS:-/nonexistent}/torch-2.13.0* >/dev/null 2>&1; then \
		$(BIN)/python -m pip install --quiet torch==2.13.0; \
	else echo "torch: no local CPU build; the torch comparison test will be skipped"; fi
	touch $@ $(VENV)/.installed $(VENV)/.installed-core

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The demo installs the core only: show needs no TensorFlow (make install adds verify's Keras, plot's matplotlib).
demo: $(VENV)/.installed-core
	$(BIN)/lstm-inspect show $(SAMPLE)
	@echo
	@echo "lstm-inspect is in .venv/bin: run '. .venv/bin/activate' (or call .venv/bin/lstm-inspect) for the examples."

# Two workers: CI has two cores, and the suite runs in half the time (each worker starts its own Keras).
# ruff checks the project's own code only: the README's examples leave their files (port.py, exported model.py)
# in the clone's top folder.
test: install-test
	$(BIN)/ruff check lstm_inspect tests benchmarks sample_models
	$(BIN)/python -m pytest -q -n 2

# The test suite's fuzz cases are the same on every machine and every run (tests/test_fuzz.py). Before a release,
# search further: fresh random cases, FUZZ_EXAMPLES per command (a sixth of them for plot and verify, a quarter for
# the TF formats), the real checkpoints of ../shared/realworld too when they are there. One worker: about a
# quarter of an hour at the default (300 cases per command took 11 minutes).
FUZZ_EXAMPLES ?= 400
fuzz: install-test
	LSTM_INSPECT_FUZZ=random LSTM_INSPECT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:xdist \
		tests/test_fuzz.py

# Reruns every command block of README.md in a temporary copy of a clone and rewrites the output blocks under them
# (tests/test_readme_blocks.py checks them); read the diff before committing it.
readme: install-test
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python tests/test_readme_blocks.py --update

samples: install
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python sample_models/generate.py

clean:
	rm -rf $(VENV) build *.egg-info

# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set by this workplace only and halve NumPy's matmul
# speed; users' machines have neither, so the benchmarks unset both for their own commands.
BENCH_ENV := env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE TF_CPP_MIN_LOG_LEVEL=3

bench: install-test
	$(BENCH_ENV) $(BIN)/python benchmarks/show_speed.py
	$(BENCH_ENV) $(BIN)/python benchmarks/engine_speed.py
	$(BENCH_ENV) $(BIN)/python benchmarks/export_speed.py
	$(BENCH_ENV) $(BIN)/python benchmarks/torch_mask_speed.py
	$(BENCH_ENV) $(BIN)/python benchmarks/memory.py
	$(BENCH_ENV) $(BIN)/python benchmarks/diagnose_time.py
