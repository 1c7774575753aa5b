# rspnet — `make demo` and `make test` do everything on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
RSPNET := $(VENV)/bin/rspnet
STAMP  := $(VENV)/.installed
# CPU_ONLY=1 (set by .ci/run): install the local CPU wheel first and fail if any CUDA
# (nvidia-*) package appears. Default: keep the torch the venv already sees (CUDA or CPU).
CPU_ONLY   ?=
TORCH_CPU  := torch==2.13.0
TORCH_SPEC := torch>=2.1,<2.15
# a machine with an NVIDIA driver gets the index's default (CUDA) torch when none is importable;
# one without gets the pinned wheel (on the project's CPU machines a local CPU build, no CUDA download)
HAS_GPU    ?= $(shell command -v nvidia-smi 2>/dev/null)
# VENV_FLAGS=--system-site-packages: a new .venv sees the cluster's / conda's CUDA torch
VENV_FLAGS ?=
export WANDB_MODE ?= offline
# test processes (pytest-xdist): plain pytest runs one test at a time and keeps one core busy; 2 workers use
# both cores of the project's 2-core machines (18 min -> 11 min there); PYTEST_WORKERS=0 runs it serially
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install demo lint test test-fast bench notebooks clean

help:  ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(PY):
	python3 -m venv $(VENV_FLAGS) $(VENV)

$(STAMP): pyproject.toml | $(PY)
ifeq ($(CPU_ONLY),1)
	# torch first: resolves to the local CPU wheel, so nothing pulls a CUDA build
	$(PY) -m pip install $(TORCH_CPU)
else
	# keep an importable torch (e.g. CUDA via VENV_FLAGS=--system-site-packages); else the index's
	# default build on a GPU machine, the pinned wheel on one without a GPU
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install '$(if $(HAS_GPU),$(TORCH_SPEC),$(TORCH_CPU))'
endif
	$(PY) -m pip install -e '.[dev]'
ifeq ($(CPU_ONLY),1)
	@if $(PY) -m pip list 2>/dev/null | grep -i nvidia; then \
		echo "error: CUDA (nvidia-*) packages were installed with CPU_ONLY=1; check the torch pins"; exit 1; fi
endif
	$(PY) -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPUs', torch.cuda.device_count())"
	touch $(STAMP)

install: $(STAMP)  ## create .venv if missing and install rspnet (+dev extras)

demo: install  ## run the whole pipeline (cell search -> macro search -> train -> eval) on synthetic data
	$(RSPNET) experiment=demo paths.output_dir=outputs/demo print_config=false

lint: install  ## ruff lint + format check (run by make test)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: install lint  ## lint, then run the test suite (PYTEST_WORKERS=2 processes)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS)

test-fast: install  ## run the test suite without slow tests
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not slow"

bench: install  ## run every benchmark into docs/benchmarks.md (CAMVID=DIR adds the CamVid rows)
	$(PY) -m bench.run_all $(if $(CAMVID),--camvid-root $(CAMVID))

notebooks: install  ## run notebooks/*.ipynb and save them with their outputs (as committed; NAMES=x.ipynb for some)
	$(PY) -m tools.notebooks $(NAMES)

clean:  ## remove outputs and caches (keeps .venv)
	rm -rf outputs multirun wandb .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
