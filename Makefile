# One command each: `make test` (set up + run all tests), `make train` (set up + the main job).
# A virtual environment in .venv is created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
TRAIN_OUT ?= runs/mnist-glow

# Use the course data next to the checkout when FLOWLIB_DATA is not set
# (FLOWLIB_NO_SHARED_DATA=1: as on a fresh clone, where only data/embedded/ is there).
ifeq ($(origin FLOWLIB_DATA), undefined)
  ifeq ($(FLOWLIB_NO_SHARED_DATA),)
    ifneq ($(wildcard ../shared/data/MNIST),)
      export FLOWLIB_DATA := $(abspath ../shared/data)
    endif
  endif
endif
NEWCOMER := env -u FLOWLIB_DATA FLOWLIB_NO_SHARED_DATA=1

.PHONY: setup test test-fast test-grading test-e2e test-newcomer train bench lab clean

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

test-newcomer: setup  ## the fresh-clone path: full data hidden, notebooks + selfcheck + train on data/embedded
	$(NEWCOMER) $(BIN)/python -m pytest tests/test_notebooks.py tests/test_embedded_data.py tests/test_student_answers.py tests/e2e
	$(NEWCOMER) $(BIN)/python -m pytest -m grading_e2e -k selfcheck tests/test_autograder.py
	rm -rf runs/newcomer-mnist-glow && mkdir -p runs
	$(NEWCOMER) $(MAKE) train TRAIN_OUT=runs/newcomer-mnist-glow | tee runs/newcomer-train.log
	grep -q "^done: .* on embedded MNIST subset" runs/newcomer-train.log

train: setup  ## the main job: a small Glow on MNIST, a few minutes on a laptop CPU
	$(BIN)/flowlib train --model glow --dataset mnist --out $(TRAIN_OUT)

test-e2e: setup  ## browser tests only: JupyterLab + Chromium
	$(BIN)/python -m pytest -m e2e tests/e2e

bench: setup  ## training and sampling throughput, ours against normflows
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/train_throughput.py

lab: setup  ## JupyterLab on the student notebooks (in notebooks/, whose nbgrader_config.py Validate reads)
	cd notebooks && $(abspath $(BIN))/jupyter lab

clean:
	rm -rf $(VENV) .pytest_cache runs test-artifacts
