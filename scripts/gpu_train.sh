#!/bin/sh
# A stage-3 (realism) training burst for a lent GPU machine, as one command (docs/training.md,
# "On a GPU"). Prepare once here with `make gpu-bundle`, then run through the device tool with
# carry [".gpu"] and a timeout that leaves room (BUDGET + about 120 s):
#     BUDGET=360 sh scripts/gpu_train.sh
# It continues from the shipped stage-3 decoder (or INIT, a model folder) and writes to $OUT
# (or ./gpu-out): model/decoder.json + decoder.safetensors (the exported decoder, 7.5 MB), the
# moving average of its weights in model-ema/ (EMA, the decay; 0: none), its
# critic (critic.safetensors, 5.6 MB: the next burst's CRITIC), the training log (losses, validation PSNR / LPIPS-Alex / LPIPS-VGG on the held-out crops, the
# fitted step count and seconds per step) and the GPU's name. Back here:
#     cp -r ulic/models/ulic-base runs/gpu-model && cp OUT/model/decoder.* runs/gpu-model/
# then evaluate runs/gpu-model (`ulic eval --model runs/gpu-model ...`) before shipping it.
# Settings (environment): BUDGET seconds of training, BATCH, STEPS (upper bound), DEVICE
# (cuda; cpu runs the same path here for a check), ARGS (more train_realism options, e.g.
# "--mse-drop 0.3 --beta 0.1"; an option given again overrides the lattice weight and critic shift
# of the shipped recipe, `--w-grid 256 --d-shift 4`, which keep the stripes away). CRITIC: a
# critic file to start from (default .gpu/critic.safetensors when `make gpu-bundle CRITIC=...`
# put one there): a random critic costs a continuation its first several hundred steps. EMA
# (default 0.998): the moving average's decay (on 2 CPUs it scored a little better than the
# weights on every metric, model card "Warm critic and a moving average"; 0: none).
# ARGS="--critic-kind projected" trains against the projected critic (heads on the loss's VGG16
# features; docs/training.md) instead of the patch one; a CRITIC file must then be of that kind
# (`make gpu-bundle` without CRITIC, or one returned by such a burst). The shipped decoder (3k)
# was trained that way: ARGS="--critic-kind projected --d-warmup 300" continues it with a new
# projected critic that trains alone for its first 300 steps.
set -e
OUT=${OUT:-gpu-out}
BUDGET=${BUDGET:-360}
BATCH=${BATCH:-32}
STEPS=${STEPS:-100000}
DEVICE=${DEVICE:-cuda}
WORK=${WORK:-/tmp/ulic-gpu-train}
EMA=${EMA:-0.998}
mkdir -p "$OUT" "$WORK"
if [ -d .gpu/whl ] && ! python3 -c "import constriction" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} ULIC_WEIGHTS_DIR=${ULIC_WEIGHTS_DIR:-$PWD/.gpu/taef2}
export ULIC_LPIPS_WEIGHTS_DIR=${ULIC_LPIPS_WEIGHTS_DIR:-$PWD/.gpu/lpips} PYTHONUNBUFFERED=1
if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"; fi
CRITIC=${CRITIC:-.gpu/critic.safetensors}
[ -f "$CRITIC" ] || CRITIC=
python3 -m ulic.train.crop_pack unpack --pack "${PACK:-.gpu/crops.safetensors}" --out "$WORK/crops.safetensors" --device "$DEVICE"
# shellcheck disable=SC2086 # ARGS is a list of options
python3 -m ulic.train.train_realism --crops "$WORK/crops.safetensors" --run "$WORK/run" --device "$DEVICE" \
    ${INIT:+--model "$INIT"} ${CRITIC:+--critic "$CRITIC"} --batch "$BATCH" --steps "$STEPS" --budget-s "$BUDGET" --ckpt-every 500 \
    --val-every 250 --log-every 20 --w-grid 256 --d-shift 4 --ema "$EMA" $ARGS 2>&1 | tee "$OUT/train.txt"
cp "$WORK/run/log.jsonl" "$OUT/log.jsonl"
python3 -m ulic.train.export --realism-checkpoint "$WORK/run/checkpoint.safetensors" --out "$OUT/model" >/dev/null
if [ "$EMA" != 0 ]; then
    python3 -m ulic.train.export --realism-checkpoint "$WORK/run/checkpoint.safetensors" --out "$OUT/model-ema" --ema >/dev/null
fi
python3 -m ulic.train.export --critic-of "$WORK/run/checkpoint.safetensors" --out "$OUT/critic.safetensors" >/dev/null
ls -l "$OUT/model"
