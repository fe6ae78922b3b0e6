"""Stage 1 training: the variable-rate latent codec on cached TAEF2 latents.

Loss per sample: bpp(y, z) + lambda(q) * MSE(z_c, x) in latent space, q ~ U[0, 1].
Checkpoints (safetensors + JSON, no pickle) are written atomically and resumed automatically.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import TextIO

import torch
from safetensors.torch import load_file

from ulic.codec.model import LATENT_PER_Z, CodecConfig, LatentCodec, lmbda_of
from ulic.runtime import channels_last, tune_allocator
from ulic.train import distributed
from ulic.train.common import (
    LatentCrops,
    add_run_arguments,
    channel_sensitivity,
    load_checkpoint,
    load_init_weights,
    log_line,
    lr_at,
    save_checkpoint,
    split,
    update_averages,
)
from ulic.vae.taef2 import decode_pixels

CROP = 32  # latent positions per crop side (256 image pixels)
LOG_EVERY = 20


def rd_loss(
    codec: LatentCodec,
    x: torch.Tensor,
    q: torch.Tensor,
    decoder: torch.nn.Module | None = None,
    latent_weight: float = 0.02,
    channel_weights: torch.Tensor | None = None,
    bf16: bool = False,
    forward: torch.nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """bpp + lambda(q) * D. D is latent MSE (optionally weighted per channel), or (with the
    frozen VAE decoder) pixel MSE against the VAE's own reconstruction plus latent_weight *
    latent MSE. bf16 runs only the VAE decoder in bfloat16; rates stay float32. forward: the
    module to call instead of codec (its DistributedDataParallel wrapper under torchrun)."""
    out = (forward or codec)(x, q)
    pixels = x.shape[2] * x.shape[3] * 64
    bpp = out["bits"] / pixels
    err = (out["z_c"] - x).pow(2)
    mse = err.flatten(1).mean(1)
    res = {"bpp": bpp.mean(), "mse": mse.mean()}
    if decoder is None:
        dist = mse if channel_weights is None else (err * channel_weights[:, None, None]).flatten(1).mean(1)
    else:
        with torch.no_grad():
            target = decode_pixels(decoder, x, bf16).clamp(0, 1)  # (B, 3, 8h, 8w)
        pix = (decode_pixels(decoder, out["z_c"], bf16) - target).pow(2).flatten(1).mean(1)
        dist = pix + latent_weight * mse
        res["psnr"] = (-10 * torch.log10(pix.detach().clamp_min(1e-10))).mean()
    res["loss"] = (bpp + lmbda_of(q, codec.cfg) * dist).mean()
    return res


@torch.no_grad()
def validate(
    codec: LatentCodec, val: dict[str, torch.Tensor], decoder: torch.nn.Module | None = None
) -> dict[str, float]:
    """Mean bpp, latent MSE (and pixel PSNR with the decoder) at q = 0, 0.5 and 1."""
    codec.eval()
    res: dict[str, float] = {}
    for qv in (0.0, 0.5, 1.0):
        sums: dict[str, float] = {}
        for v in val.values():
            h, w = (v.shape[1] // LATENT_PER_Z) * LATENT_PER_Z, (v.shape[2] // LATENT_PER_Z) * LATENT_PER_Z
            x = v[None, :, :h, :w].float()
            torch.manual_seed(0)
            r = rd_loss(codec, x, torch.full((1,), qv), decoder)
            for k in ("bpp", "mse", "psnr"):
                if k in r:
                    sums[k] = sums.get(k, 0.0) + float(r[k]) / len(val)
        res.update({f"q{qv:g}_{k}": v for k, v in sums.items()})
    codec.train()
    return res


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    add_run_arguments(ap, steps=20000, batch=16, lr=4e-4, ckpt_every=100)
    ap.add_argument("--latents", type=Path, required=True, help="cache from ulic.train.latents")
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--config", type=str, default="{}", help="JSON overrides of CodecConfig")
    ap.add_argument(
        "--init", type=Path, default=None, help="start from these weights: a checkpoint or a shipped model folder"
    )
    ap.add_argument(
        "--distortion",
        choices=("latent", "pixel"),
        default="latent",
        help="pixel: MSE through the frozen TAEF2 decoder (slower, better PSNR)",
    )
    ap.add_argument(
        "--fast-lr-scale",
        type=float,
        default=1.0,
        help="learning-rate factor for the hyper-latent prior and the gain vectors: few "
        "parameters that must move far when fine-tuning at a low learning rate",
    )
    ap.add_argument(
        "--bf16",
        action="store_true",
        help="pixel distortion: run the frozen VAE decoder in bfloat16 (only fast on CPUs " "with native bfloat16)",
    )
    ap.add_argument("--crop", type=int, default=CROP, help="latent crop side (x8 pixels)")
    ap.add_argument("--n-val", type=int, default=16)
    ap.add_argument(
        "--weighted",
        action="store_true",
        help="latent distortion: weight channels by their pixel sensitivity (needs TAEF2)",
    )
    return ap.parse_args(argv)


def build(args: argparse.Namespace, rank: distributed.Rank) -> dict:
    """Codec, optimiser (a faster group for the prior and gains), resumed state and this rank's
    shard of the data."""
    cfg = CodecConfig(**json.loads(args.config))
    codec = LatentCodec(cfg)
    fast = {
        id(p) for p in (*codec.prior.parameters(), codec.log_zgain, codec.log_zigain, codec.log_gain, codec.log_igain)
    }
    opt = torch.optim.Adam(
        [
            {"params": [p for p in codec.parameters() if id(p) not in fast], "lr_scale": 1.0},
            {"params": [p for p in codec.parameters() if id(p) in fast], "lr_scale": args.fast_lr_scale},
        ],
        lr=args.lr,
    )
    ckpt = args.run / "checkpoint.safetensors"
    meta = {"step": 0, "seconds": 0.0, "config": json.loads(args.config)}
    if ckpt.exists():
        meta = load_checkpoint(ckpt, {"model": codec}, {"opt": (opt, codec)})
        print(f"resumed at step {meta['step']}", flush=True)
    elif args.init is not None:
        load_init_weights(args.init, codec)
        meta["init"] = str(args.init)
    train, val = split(load_file(str(args.latents)), n_val=args.n_val)
    images = distributed.shard(sorted({k.rsplit("@", 1)[0] for k in train}), rank)  # all scales of an image together
    mine = set(images)
    train = {k: v for k, v in train.items() if k.rsplit("@", 1)[0] in mine}
    decoder, weights = None, None
    if args.distortion == "pixel" or args.weighted:
        from ulic.vae.weights import load_vae

        decoder = load_vae().decoder
        if args.bf16:
            decoder = channels_last(decoder)
    if args.weighted and args.distortion == "latent":
        probe = [v[:, :32, :32] for v in list(train.values())[:: max(1, len(train) // 4)][:4]]
        weights = channel_sensitivity(load_vae().decoder, probe)
        print("channel weights", [round(float(w), 3) for w in weights], flush=True)
        decoder = None
    return {
        "codec": codec,
        "opt": opt,
        "ckpt": ckpt,
        "meta": meta,
        "val": val,
        "decoder": decoder,
        "weights": weights,
        "crops": LatentCrops(train, args.crop, args.seed + meta["step"] + distributed.SEED_PER_RANK * rank.rank),
        "images": images,
        "forward": distributed.wrap(codec, rank),
    }


def train(args: argparse.Namespace, run: dict, rank: distributed.Rank) -> None:
    """The loop: one rate-distortion step per batch; rank 0 logs, validates and checkpoints."""
    codec, opt, meta = run["codec"], run["opt"], run["meta"]
    t0, seconds0, step = time.time(), meta["seconds"], meta["step"]
    avg: dict[str, float] = {}
    with open(args.run / f"log{'' if rank.main else f'.rank{rank.rank}'}.jsonl", "a") as log:
        while step < args.steps:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, args.steps, args.lr) * g["lr_scale"]
            x = run["crops"].batch(args.batch)
            q = torch.rand(args.batch)
            r = rd_loss(
                codec, x, q, run["decoder"], channel_weights=run["weights"], bf16=args.bf16, forward=run["forward"]
            )
            opt.zero_grad(set_to_none=True)
            r["loss"].backward()  # under DDP: gradients averaged over the ranks here
            torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
            opt.step()
            step += 1
            update_averages(avg, r)
            elapsed = seconds0 + time.time() - t0
            if rank.main:
                report(args, run, log, step, elapsed, avg)


def report(args: argparse.Namespace, run: dict, log: TextIO, step: int, elapsed: float, avg: dict[str, float]) -> None:
    """Rank 0's log lines, validation and checkpoints after a step."""
    codec, opt = run["codec"], run["opt"]
    if step % LOG_EVERY == 0:
        log_line(log, step, elapsed, avg, args.steps)
    if step % args.val_every == 0 or step == args.steps:
        val = validate(codec, run["val"], run["decoder"])
        log_line(log, step, elapsed, {f"val_{k}": v for k, v in val.items()}, args.steps)
    if step % args.ckpt_every == 0 or step == args.steps:
        meta = {**run["meta"], "step": step, "seconds": elapsed}
        save_checkpoint(run["ckpt"], {"model": codec}, {"opt": (opt, codec)}, meta)


def main(argv: list[str] | None = None) -> int:
    tune_allocator()
    args = parse(argv)
    rank = distributed.init()
    args.run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    random.seed(args.seed)
    run = build(args, rank)
    torch.manual_seed(
        args.seed + run["meta"]["step"] + distributed.SEED_PER_RANK * rank.rank
    )  # ranks draw different q, noise
    train(args, run, rank)
    if rank.distributed:
        distributed.write_ranks(args.run, run["codec"], run["images"], rank)
    distributed.finish(rank)
    return 0


if __name__ == "__main__":
    sys.exit(main())
