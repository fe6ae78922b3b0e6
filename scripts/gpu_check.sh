#!/bin/sh
# The checks that need a GPU, as one short script for a lent device machine (see
# docs/training.md, "On a GPU"). Prepare once here with `make gpu-bundle` (wheels the machine
# lacks and the TAEF2 weights, in the git-ignored .gpu/), then run through the device tool with
# carry [".gpu"]:  sh scripts/gpu_check.sh
# It writes to $OUT (or ./gpu-out): the GPU tests' log, results/bench/gpu.json-style numbers.
set -e
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH=/tmp/site:$PWD ULIC_WEIGHTS_DIR=$PWD/.gpu/taef2 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
# 1. files written on the GPU decode on the CPU; batched decode; golden files on this machine
python3 -m pytest -q -p no:cacheprovider tests/test_device.py tests/test_golden.py 2>&1 | tee "$OUT/tests.log"
# 2. decode latency and images/s at 768x512 (Kodak's size), 0.03 bpp
python3 -m ulic.tools.bench_gpu --device cuda --images 24 --batch 8 --out "$OUT/gpu.json"
python3 -m ulic.tools.bench_gpu --device cuda --images 48 --batch 16 --out "$OUT/gpu_b16.json"
