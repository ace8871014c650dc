# One command to set up and run the main job, one to set up and run the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# Packages are installed without byte-compiling all of them (pip's default compiles every module of torch and
# transformers, most of which a sweep never imports: ~90 s of a fresh setup on 2 cores); the make targets then
# let Python write the bytecode of what they do import, once, into this project's own .venv. Where
# PYTHONDONTWRITEBYTECODE is set for the shell, every new process (each sweep worker) would otherwise compile
# torch and transformers again (~13 s each).
PIP := $(BIN)/python -m pip install -q --no-compile
RUN := PYTHONDONTWRITEBYTECODE=

.PHONY: quickstart test setup clean bench

# Without a GPU, install the CPU build of torch first (a plain `torch` requirement would
# pull several GB of CUDA packages); with one, pip resolves torch>=2.3 from pyproject.
# `train` (torch, transformers) is for sweeps; fitting, predicting, plotting and watching need neither.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	command -v nvidia-smi >/dev/null 2>&1 || $(PIP) torch==2.13.0
	$(PIP) -e ".[train]"
	touch $(STAMP)

# the tests also need the notebook runner, pyarrow and submitit
$(TEST_STAMP): $(STAMP)
	$(PIP) -e ".[train,test,cluster]"
	touch $(TEST_STAMP)

setup: $(TEST_STAMP)

quickstart: $(STAMP)
	$(RUN) $(BIN)/scaling quickstart --out out/quickstart

test: $(TEST_STAMP)
	$(RUN) OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 tests

bench: $(STAMP)
	$(RUN) $(BIN)/python benchmarks/fit_speed.py

clean:
	rm -rf $(VENV) out .pytest_cache
