#!/bin/sh
# Regenerates every table of the README and results/ from scratch: `make results` (or run a
# part: `sh scripts/results.sh baselines|dense|ulic|stage2|other|fid|semantics|triple|fuzz|report`). Times are for 2 CPU
# cores (AMD EPYC, AVX2) with nothing else running; `all` is about 7 hours.
# Needs ULIC_KODAK_DIR (the Makefile sets it from ../shared) and a set-up .venv.
set -e
BIN=${BIN:-.venv/bin}
K=${ULIC_KODAK_DIR:?set ULIC_KODAK_DIR to the Kodak folder}
part=${1:-all}

baselines() {  # results/kodak/{jpeg,webp,avif,hevc,jxl}*: the default grids, all metrics (~35 min)
    $BIN/ulic eval --data "$K" --codec jpeg webp avif hevc jxl
}

dense() {  # results/kodak/{hevc,avif}-dense*: brackets of 0.02/0.03/0.05 bpp, LPIPS + PSNR (~80 min)
    for c in hevc avif; do
        s=$($BIN/python -m ulic.evaluation.grid --codec $c --data "$K" --targets 0.02 0.03 0.05)
        $BIN/ulic eval --data "$K" --codec $c --name $c-dense --metrics psnr,lpips_alex --settings $s
    done
}

ulic() {  # results/kodak/ulic-realism*: the shipped model, default decoder, and with --src (~50 min)
    $BIN/ulic eval --data "$K" --codec ulic --name ulic-realism --decoder diffusion --steps 4 \
        --settings 0 10 25 40 50 55 60 75 --metrics psnr,ms_ssim,lpips_alex,dists,grid8
    for r in 0 0.5 1; do
        $BIN/ulic eval --data "$K" --codec ulic --name ulic-realism-r$r --decoder diffusion --steps 4 \
            --realism $r --settings 40 50 60
    done
    $BIN/ulic eval --compare ulic-diffusion ulic-realism
    # the earlier stage-3 decoders, their rows kept: 60fe4fdf (3a, before the lattice continuation)
    # as ulic-realism-s3a (git show 53ebc50:results/kodak/ulic-realism.json), fc01fb04 (3g, before
    # the concept-reading continuation) as ulic-realism-s3g (git show cacaddc:results/kodak/ulic-realism.json),
    # 0aceb053 (3h, before the projected-critic continuation) as ulic-realism-s3h (git show 814512f:results/kodak/ulic-realism.json)
    $BIN/ulic eval --compare ulic-realism-s3a ulic-realism
    $BIN/ulic eval --compare ulic-realism-s3g ulic-realism
    $BIN/ulic eval --compare ulic-realism-s3h ulic-realism
    # + SRC: the same decoder reading the files' concept ids (issue 14's ablation)
    $BIN/ulic eval --data "$K" --codec ulic --name ulic-realism-src --decoder diffusion --steps 4 \
        --settings 0 10 25 40 50 55 60 75 --src --metrics psnr,ms_ssim,lpips_alex,dists,grid8
    $BIN/ulic eval --compare ulic-realism ulic-realism-src
}

stage2() {  # results/kodak/ulic-{fast,diffusion}*: the stage-2 decoder, from git history (~55 min)
    d=cache/models/stage2
    mkdir -p $d
    for f in config.json model.safetensors; do cp ulic/models/ulic-base/$f $d/; done
    for f in decoder.json decoder.safetensors; do git show c989c13^:ulic/models/ulic-base/$f > $d/$f; done
    ULIC_MODEL_DIR=$d $BIN/ulic eval --data "$K" --codec ulic --name ulic-fast --decoder fast \
        --settings 0 10 25 40 50 75 --cache cache/eval-stage2
    ULIC_MODEL_DIR=$d $BIN/ulic eval --data "$K" --codec ulic --name ulic-diffusion --decoder diffusion \
        --steps 4 --settings 25 40 50 60 --cache cache/eval-stage2
    ULIC_MODEL_DIR=$d $BIN/ulic eval --data "$K" --codec ulic --name ulic-diffusion-o20 --decoder diffusion \
        --steps 4 --optimize 20 --settings 40 50 60 --cache cache/eval-stage2   # ~45 min of it
    $BIN/ulic eval --compare ulic-fast ulic-diffusion
    $BIN/ulic eval --compare ulic-diffusion ulic-diffusion-o20
}

other() {  # stage-1 table, TAEF2 ceiling, speed, large images, decode times, outside and held-out photos (~1.5 h)
    $BIN/python -m ulic.tools.bench_codec --data "$K" --out results/kodak/stage1_bench.json
    $BIN/python -m ulic.tools.bench_codec --data "$K" --out results/kodak/vae_roundtrip.json --vae-only
    $BIN/python -m ulic.tools.bench_decoder --image "$K/kodim23.png" --out results/kodak/decode_times.json
    $BIN/python -m ulic.tools.bench_large --image "$K/kodim23.png" --out results/large_images.json
    $BIN/ulic --threads 2 bench --sizes 256x256 768x512 1344x1008 2048x2048 --runs 2
    make outside-photos
    mkdir -p cache/val  # the 6 held-out BSDS500 photos of the training folder
    ls "${ULIC_SHARED:-../shared}"/data/train/bsds500/val_* | sort | head -6 | xargs -I{} cp {} cache/val/
    for set in outside val; do
        for r in 0 0.5 1; do
            $BIN/ulic eval --data cache/$set --out results/$set --codec ulic --name s3-r$r \
                --decoder diffusion --steps 4 --realism $r --settings 30 40 50 --metrics psnr,ms_ssim,lpips_alex,dists,grid8
        done
        ULIC_MODEL_DIR=cache/models/stage2 $BIN/ulic eval --data cache/$set --out results/$set --codec ulic \
            --name stage2 --decoder diffusion --steps 4 --settings 30 40 50 --cache cache/eval-stage2
    done
    $BIN/ulic eval --data cache/outside --out results/outside --codec ulic --name s3-r1-e1 --decoder diffusion \
        --steps 4 --realism 1 --settings 30 40 50 60 --effort 1
    $BIN/ulic eval --out results/outside --compare s3-r1 s3-r1-e1
    $BIN/ulic eval --data cache/outside --out results/outside --codec ulic --name s3-r1-e3 --decoder diffusion \
        --steps 4 --realism 1 --settings 30 40 50 --effort 3 --metrics psnr,ms_ssim,lpips_alex,dists,grid8
    $BIN/ulic eval --out results/outside --compare s3-r1 s3-r1-e3
}

fid() {  # results/kodak/fid64/: FID/64 at 0.02/0.03/0.05 bpp on the first 6 images, HEVC hull points vs ulic, plain and --effort 1; on all 24 with AVIF too (~165 min)
    $BIN/ulic eval --data "$K" --limit 6 --out results/kodak/fid64 --codec hevc --name hevc-dense-fid \
        --metrics psnr,lpips_alex --settings hevc:d1.5:q6 hevc:d2:q13 --fid 64
    $BIN/ulic eval --data "$K" --limit 6 --out results/kodak/fid64 --codec ulic --name ulic-realism-fid \
        --decoder diffusion --steps 4 --metrics psnr,lpips_alex --settings 50 60 --fid 64
    $BIN/ulic eval --data "$K" --limit 6 --out results/kodak/fid64 --codec ulic --name ulic-pfo-e1-fid \
        --decoder diffusion --steps 4 --metrics psnr,lpips_alex --settings 50 60 --effort 1 --fid 64
    $BIN/ulic eval --data "$K" --limit 6 --out results/kodak/fid64 --codec hevc --name hevc-dense-fid-b \
        --metrics psnr,lpips_alex --settings hevc:d2:q8 hevc:d1.25:q10 --fid 64  # hull points at 0.02, 0.05
    $BIN/ulic eval --data "$K" --limit 6 --out results/kodak/fid64 --codec ulic --name ulic-realism-fid-b \
        --decoder diffusion --steps 4 --metrics psnr,lpips_alex --settings 45 70 --fid 64
    # all 24 images at 0.03 bpp: ulic, the HEVC and AVIF dense-hull points (~10 min each; 27 min on
    # a float32 2-core EPYC); 3h's ulic rows kept as ulic-realism-s3h-fid24 (here and in grid8/)
    $BIN/ulic eval --data "$K" --out results/kodak/fid64 --codec ulic --name ulic-realism-fid24 \
        --decoder diffusion --steps 4 --metrics psnr,lpips_alex --settings 55 --fid 64
    $BIN/ulic eval --data "$K" --out results/kodak/fid64 --codec hevc --name hevc-dense-fid24 \
        --metrics psnr,lpips_alex --settings hevc:d2:q13 --fid 64
    $BIN/ulic eval --data "$K" --out results/kodak/fid64 --codec avif --name avif-dense-fid24 \
        --metrics psnr,lpips_alex --settings avif:d1.75:q6 --fid 64
    # all 24 images at 0.02 and 0.05 bpp: HEVC's dense-hull points, AVIF's best LPIPS near each rate
    # (3h's ulic rows kept as ulic-realism-s3h-fid24-b)
    $BIN/ulic eval --data "$K" --out results/kodak/fid64 --codec ulic --name ulic-realism-fid24-b \
        --decoder diffusion --steps 4 --metrics psnr,lpips_alex --settings 45 70 --fid 64
    $BIN/ulic eval --data "$K" --out results/kodak/fid64 --codec hevc --name hevc-dense-fid24-b \
        --metrics psnr,lpips_alex --settings hevc:d2:q8 hevc:d1.25:q10 --fid 64
    $BIN/ulic eval --data "$K" --out results/kodak/fid64 --codec avif --name avif-dense-fid24-b \
        --metrics psnr,lpips_alex --settings avif:d2:q4 avif:d1.5:q10 --fid 64
    # grid8 (the 8-px pattern a decoder adds) at 0.03 bpp, scored on the cached PNGs of the runs above
    for run in "ulic --name ulic-realism-fid24 --decoder diffusion --steps 4 --settings 55" \
        "hevc --name hevc-dense-fid24 --settings hevc:d2:q13" "avif --name avif-dense-fid24 --settings avif:d1.75:q6"; do
        # shellcheck disable=SC2086 # run is a list of options
        $BIN/ulic eval --data "$K" --out results/kodak/grid8 --metrics psnr,lpips_alex,grid8 --codec $run
    done
}

semantics() {  # results/kodak/ulic-pfo-e{1,2,3}* (--effort, and e1 with --src), src_bytes.json, results/bench/effort.json (~105 min)
    for e in 1 2; do
        $BIN/ulic eval --data "$K" --codec ulic --name ulic-pfo-e$e --decoder diffusion --steps 4 \
            --settings 40 50 60 --effort $e
        $BIN/ulic eval --compare ulic-realism ulic-pfo-e$e
    done
    # effort 3 (the pixel objective, about a minute per image): the two settings around 0.03 bpp
    $BIN/ulic eval --data "$K" --codec ulic --name ulic-pfo-e3 --decoder diffusion --steps 4 \
        --settings 50 60 --effort 3 --metrics psnr,ms_ssim,lpips_alex,dists
    $BIN/ulic eval --compare ulic-realism ulic-pfo-e3
    # Pfo over the SRC ids too (a decoder that reads them): against the same files without Pfo
    $BIN/ulic eval --data "$K" --codec ulic --name ulic-pfo-e1-src --decoder diffusion --steps 4 \
        --settings 40 50 60 --effort 1 --src
    $BIN/ulic eval --compare ulic-realism-src ulic-pfo-e1-src
    $BIN/python -m ulic.tools.bench_src --data "$K" --out results/kodak/src_bytes.json
    $BIN/python -m ulic.tools.bench_effort --image "$K/kodim23.png" --out results/bench/effort.json
    # FID/64 of the arms from their cached decodes (~17 min each on the 2-core Xeon)
    for arm in "ulic-realism" "ulic-realism-src --src" "ulic-pfo-e1 --effort 1" "ulic-pfo-e2 --effort 2"; do
        # shellcheck disable=SC2086 # arm is a name plus options
        $BIN/ulic eval --data "$K" --out results/kodak/fid64 --codec ulic --decoder diffusion --steps 4 \
            --metrics psnr,lpips_alex --settings 40 50 60 --fid 64 --name $arm
    done
    for arm in ulic-realism-src ulic-pfo-e1 ulic-pfo-e2; do
        $BIN/ulic eval --out results/kodak/fid64 --compare ulic-realism $arm
    done
}

triple() {  # results/ablation/triple: the triple encoder against its fine-tuning baseline: train, export, Kodak, FID/64 (~60 min)
    crops=${CROPS:-cache/pixel_crops128c.safetensors}  # `make crops` (docs/training.md)
    o=results/ablation/triple
    mkdir -p $o && cp results/kodak/ulic-realism.json $o/  # the shipped analysis, from `ulic`
    for arm in triple plain; do
        $BIN/python -m ulic.train.train_encoder --crops "$crops" --run runs/te-$arm --arm $arm --steps 600 --batch 16
        $BIN/python -m ulic.train.export --encoder-checkpoint runs/te-$arm/checkpoint.safetensors --out runs/te-$arm-model
        ULIC_MODEL_DIR=runs/te-$arm-model $BIN/ulic eval --data "$K" --out $o --codec ulic --name te-$arm \
            --decoder diffusion --steps 4 --settings 40 50 55 60 --metrics psnr,ms_ssim,lpips_alex,dists
        $BIN/ulic eval --out $o --compare ulic-realism te-$arm
    done
    $BIN/ulic eval --out $o --compare te-plain te-triple
    for arm in triple plain; do
        ULIC_MODEL_DIR=runs/te-$arm-model $BIN/ulic eval --data "$K" --out results/kodak/fid64 --codec ulic \
            --name te-$arm --decoder diffusion --steps 4 --settings 40 50 60 --metrics psnr,lpips_alex --fid 64
        $BIN/ulic eval --out results/kodak/fid64 --compare ulic-realism te-$arm
    done
    $BIN/ulic eval --out results/kodak/fid64 --compare te-plain te-triple
}

fuzz() {  # results/fuzz.json: 100,000 hostile inputs (~20 min)
    $BIN/python -m ulic.tools.fuzz --n 100000 --hang-s 20 --out results/fuzz.json
}

report() {  # plots, BD-rate and matched-rate tables, report.html with crops (~2 min)
    $BIN/ulic eval --data "$K" --report
}

case $part in
    all) baselines; dense; ulic; stage2; other; fid; semantics; triple; fuzz; report ;;
    baselines | dense | ulic | stage2 | other | fid | semantics | triple | report | fuzz) $part ;;
    *) echo "usage: $0 [all|baselines|dense|ulic|stage2|other|fid|semantics|triple|report|fuzz]" >&2; exit 2 ;;
esac
