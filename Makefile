# imgbench: `make train` and `make test` set everything up on a fresh machine (they create or refresh .venv).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

# Offline data: point IMGBENCH_DATA_DIR at ../shared/datasets when that folder exists (and nothing else is set).
SHARED_DATA := $(abspath ../shared/datasets)
ifneq ($(wildcard $(SHARED_DATA)/.),)
export IMGBENCH_DATA_DIR ?= $(SHARED_DATA)
endif

.PHONY: help install train test lint format bench tensorboard clean

help:
	@echo "make train [ARGS='model=keras_fcn data=fashion_mnist']  train (default: Keras CNN on MNIST)"
	@echo "make test                                              lint and run the test suite"
	@echo "make bench                                             benchmarks -> benchmarks/results.md"
	@echo "make tensorboard                                       TensorBoard over outputs/"
	@echo "make clean                                             remove outputs/ and caches"

install: $(VENV)/.installed

# Re-installs when pyproject.toml changes. pip takes torch/torchvision from the local wheel store where one is
# configured; never pin torch above 2.14.1.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

train: install
	$(PY) train.py $(ARGS)

# the suite runs on 2 worker processes (pytest-xdist): most tests wait on subprocesses and imports
TEST_WORKERS ?= 2
test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n $(TEST_WORKERS) $(ARGS)

lint: install
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) -m benchmarks $(ARGS)

tensorboard: install
	$(VENV)/bin/tensorboard --logdir outputs

clean:
	rm -rf outputs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
