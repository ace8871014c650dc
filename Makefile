# One command to set up and run the main job, one to set up and run the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart test setup clean bench

# Without a GPU, install the CPU build of torch first (a plain `torch` requirement would
# pull several GB of CUDA packages); with one, pip resolves torch>=2.3 from pyproject.
# `train` (torch, transformers) is for sweeps; fitting, predicting, plotting and watching need neither.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	command -v nvidia-smi >/dev/null 2>&1 || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[train,test,cluster]"
	touch $(STAMP)

setup: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/scaling quickstart --out out/quickstart

test: $(STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python benchmarks/fit_speed.py

clean:
	rm -rf $(VENV) out .pytest_cache
