# rspnet — `make demo` and `make test` do everything on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
RSPNET := $(VENV)/bin/rspnet
STAMP  := $(VENV)/.installed
export WANDB_MODE ?= offline

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast bench clean

help:  ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	# torch first: resolves to the local CPU wheel, so nothing pulls a CUDA build
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	@if $(PY) -m pip list 2>/dev/null | grep -i nvidia; then \
		echo "error: CUDA (nvidia-*) packages were installed; check the torch/torchvision pins"; exit 1; fi
	touch $(STAMP)

install: $(STAMP)  ## create .venv if missing and install rspnet (+dev extras)

demo: install  ## run the whole pipeline (cell search -> macro search -> train -> eval) on synthetic data
	$(RSPNET) experiment=demo paths.output_dir=outputs/demo print_config=false

test: install  ## run the test suite
	$(PY) -m pytest -q

test-fast: install  ## run the test suite without slow tests
	$(PY) -m pytest -q -m "not slow"

bench: install  ## run the benchmarks (results appended to docs/benchmarks.md)
	$(PY) -m bench.run_all

clean:  ## remove outputs and caches (keeps .venv)
	rm -rf outputs multirun wandb .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
