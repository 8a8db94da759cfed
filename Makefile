# One command each: `make test` (set up + run all tests), `make train` (set up + the main job).
# A virtual environment in .venv is created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

# Use the course data next to the checkout when FLOWLIB_DATA is not set.
ifeq ($(origin FLOWLIB_DATA), undefined)
  ifneq ($(wildcard ../shared/data/MNIST),)
    export FLOWLIB_DATA := $(abspath ../shared/data)
  endif
endif

.PHONY: setup test test-fast test-grading test-e2e train bench lab clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[course,dev]"
	touch $@

setup: $(BIN)/.installed

test: setup  ## everything: flowlib, notebooks (nbval), browser, autograding batches, selfcheck, release
	$(BIN)/python -m pytest

test-grading: setup  ## only the whole autograding batches and the selfcheck of every notebook
	$(BIN)/python -m pytest -m grading_e2e

test-fast: setup  ## unit tests only, without the slow ones
	$(BIN)/python -m pytest -m "not slow"

train: setup  ## the main job: a small Glow on MNIST, a few minutes on a laptop CPU
	$(BIN)/flowlib train --model glow --dataset mnist --out runs/mnist-glow

test-e2e: setup  ## browser tests only: JupyterLab + Chromium
	$(BIN)/python -m pytest -m e2e tests/e2e

bench: setup  ## training and sampling throughput, ours against normflows
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/train_throughput.py

lab: setup  ## JupyterLab on the student notebooks (in notebooks/, whose nbgrader_config.py Validate reads)
	cd notebooks && $(abspath $(BIN))/jupyter lab

clean:
	rm -rf $(VENV) .pytest_cache runs test-artifacts
