#!/bin/sh
# The stage-3 ablation of the realism issue: loss terms (perceptual only; + adversarial) ×
# trainable parts (latent: DRM + denoiser in front of TAEF2's frozen decoder; pixel: the pixel
# decoder behind the stage-2 latent path; all), each arm the same short run from the stage-2
# decoder (same seed, crops, steps, schedule), judged on a fixed subset: the 6 held-out
# training-folder photos (cache/val) and the 5 photos from outside ../shared (cache/outside) at
# quality 50, R = 1, plus the training log's held-out crops. Kodak is not used.
#     sh scripts/ablation_stage3.sh                  # all six arms (about 10 min each on 2 AVX512-BF16 cores)
#     ARMS="latent-perc all-adv" sh scripts/ablation_stage3.sh
#     CRITIC_KIND=projected ARMS=all-adv sh scripts/ablation_stage3.sh   # the critic variant (runs/abl-all-adv-projected)
#     OUT=results/ablation/critics TAG=-c STEPS=200 CROPS=... sh scripts/ablation_stage3.sh   # a separate series
# Needs: cache/pixel_crops128.safetensors (README, Training), cache/models/stage2
# (`sh scripts/results.sh stage2` makes it), cache/val and cache/outside (`sh scripts/results.sh
# other`). Writes runs/abl-ARM[TAG]/ (checkpoint, log, exported model) and results/ablation/ (or OUT).
# Networks in the loss: VGG16 (LPIPS-VGG, and the DISTS backbone); AlexNet and Inception only report.
set -e
BIN=${BIN:-.venv/bin}
ARMS=${ARMS:-"latent-perc latent-adv pixel-perc pixel-adv all-perc all-adv"}
STEPS=${STEPS:-250}
CROPS=${CROPS:-cache/pixel_crops128.safetensors}
BASE=${BASE:-cache/models/stage2}
CRITIC_KIND=${CRITIC_KIND:-patch}  # patch or projected (train_realism --critic-kind)
SUFFIX=$([ "$CRITIC_KIND" = patch ] || echo "-$CRITIC_KIND")
OUT=${OUT:-results/ablation}  # results folder
TAG=${TAG:-}  # appended to the run folders, so a second series never resumes the first one's checkpoints
COMMON="--crops $CROPS --model $BASE --batch 8 --steps $STEPS --lr 2e-4 --lr-pixel 1e-4 --w-mse 16 --w-lpips 1"
COMMON="$COMMON --gan-start 60 --gan-ramp 60 --d-shift 4 --val-every 100 --ckpt-every 50 --log-every 10"
COMMON="$COMMON --critic-kind $CRITIC_KIND"
mkdir -p "$OUT"
for arm in $ARMS; do
    part=${arm%-*}
    case ${arm#*-} in
        perc) beta=0 ;;
        adv) beta=0.1 ;;
        *) echo "unknown arm $arm (PART-perc or PART-adv)" >&2; exit 2 ;;
    esac
    run=runs/abl-$arm$SUFFIX$TAG
    # shellcheck disable=SC2086 # COMMON is a list of options
    $BIN/python -m ulic.train.train_realism --run "$run" --train "$part" --beta $beta $COMMON
    mkdir -p "$run/model"
    cp "$BASE/config.json" "$BASE/model.safetensors" "$run/model/"
    $BIN/python -m ulic.train.export --realism-checkpoint "$run/checkpoint.safetensors" --out "$run/model" >/dev/null
    for set in val outside; do
        ULIC_MODEL_DIR=$run/model $BIN/ulic eval --data cache/$set --out "$OUT" --codec ulic \
            --name $set-$arm$SUFFIX --decoder diffusion --steps 4 --realism 1 --settings 50 \
            --metrics psnr,lpips_alex,dists,grid8 --cache cache/eval-abl-$arm$SUFFIX
    done
done
