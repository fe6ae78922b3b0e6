"""Stage 2 training: DRM + CDM denoiser on cached TAEF2 latents, the stage-1 codec frozen.

Per sample: q ~ U[0, 1]; z_c = codec.reconstruct(x0, q); t ~ U{0..t'(q)};
x_t = CDM forward process (ulic.diffusion.schedule); loss = D(x0_hat, x0) + D(coarse, x0),
D = latent MSE weighted per channel by the channel's pixel sensitivity through the TAEF2 decoder.

Parameterisation: x0. The sampler needs only x0_hat; the DRM's coarse latent and the
denoiser share the same target and units (our stage-1 distortion); and with the zero-initialised
output layer, x0_hat = coarse at the start, so training begins from the `fast` decoder.

t'(q) is calibrated once from the frozen codec: the smallest t whose noise-to-signal ratio
(1 - a_t) / a_t reaches kappa times the codec's latent MSE at q (monotone: lower rate, later
start), clamped to [t_min, t_max], and stored with the weights.

Runs under torchrun as train_codec does (`ulic.train.distributed`): t' is calibrated on all the
training latents (the same on every rank), then each rank draws crops from its own shard of the
images, DDP averages the gradients, rank 0 logs and writes checkpoints and run/ranks.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from ulic.codec.model import Q_STEPS
from ulic.diffusion.networks import DiffusionConfig, DiffusionDecoder
from ulic.diffusion.schedule import alphas_cumprod, cdm_forward
from ulic.model_store import load_decoder, load_model
from ulic.runtime import tune_allocator
from ulic.train import distributed
from ulic.train.common import (
    LatentCrops,
    add_run_arguments,
    channel_sensitivity,
    load_checkpoint,
    log_line,
    lr_at,
    save_checkpoint,
    split,
    update_averages,
)

LOG_EVERY = 20


@torch.no_grad()
def calibrate_t_start(
    codec, crops: LatentCrops, kappa: float, t_min: int, t_max: int, a: torch.Tensor, n: int = 32
) -> torch.Tensor:
    """(Q_STEPS + 1,) int64 t' per quality byte from the codec's latent MSE on n training crops."""
    x = crops.batch(n)
    qs = torch.arange(0, Q_STEPS + 1, 15).tolist() + [Q_STEPS]
    mse = []
    for qb in qs:
        z_c = codec.reconstruct(x, torch.full((n,), qb / Q_STEPS))
        mse.append(float((z_c - x).pow(2).mean()))
    mse_all = torch.tensor(mse, dtype=torch.float64)
    grid = torch.arange(Q_STEPS + 1, dtype=torch.float64)
    mse_q = torch.from_numpy(np.interp(grid.numpy(), qs, mse_all.numpy()))
    nsr = (1 - a) / a  # increasing in t
    t = torch.searchsorted(nsr, kappa * mse_q).clamp(t_min, t_max)
    t = torch.cummin(t, 0).values  # non-increasing in q
    return t.to(torch.int64)


def wmse(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return ((a - b).pow(2) * w[:, None, None]).mean()


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(ap, steps=4000, batch=16, lr=3e-4, ckpt_every=100)
    ap.add_argument("--latents", type=Path, required=True)
    ap.add_argument("--model", type=str, default=None, help="stage-1 model folder (default: shipped)")
    ap.add_argument("--crop", type=int, default=32)
    ap.add_argument("--kappa", type=float, default=2.0)
    ap.add_argument("--t-min", type=int, default=50)
    ap.add_argument("--t-max", type=int, default=700)
    ap.add_argument("--config", type=str, default="{}", help="JSON overrides of DiffusionConfig")
    ap.add_argument(
        "--init",
        type=str,
        default=None,
        help="start from the diffusion decoder in this model folder (t' is recalibrated)",
    )
    ap.add_argument("--no-weights", action="store_true", help="uniform channel weights (no TAEF2)")
    args = ap.parse_args(argv)
    if args.init and load_decoder(args.init) is None:
        ap.error(f"{args.init} has no diffusion decoder (decoder.json)")
    return args


def build(args: argparse.Namespace, rank: distributed.Rank) -> dict:
    """Frozen codec, decoder (fresh, or from --init), optimiser, resumed state, this rank's
    data, channel weights."""
    codec = load_model(args.model).codec.eval().requires_grad_(False)
    config = json.loads(args.config)
    init = load_decoder(args.init) if args.init else None
    if init is not None:
        config = {**init[1]["diffusion"], **config}
    dec = DiffusionDecoder(DiffusionConfig.from_dict(config))
    if init is not None:
        dec.load_state_dict(init[0].state_dict(), strict=True)
    opt = torch.optim.Adam(dec.parameters(), lr=args.lr)
    train, _ = split(load_file(str(args.latents)), n_val=6)  # the images stage 1 held out
    ckpt = args.run / "checkpoint.safetensors"
    meta = {"step": 0, "seconds": 0.0, "config": config, "kappa": args.kappa, **({"init": args.init} if init else {})}
    if ckpt.exists():
        meta = load_checkpoint(ckpt, {"model": dec}, {"opt": (opt, dec)})
        if rank.main:
            print(f"resumed at step {meta['step']}", flush=True)
    else:
        crops = LatentCrops(train, args.crop, args.seed)
        dec.t_start.copy_(calibrate_t_start(codec, crops, args.kappa, args.t_min, args.t_max, alphas_cumprod()))
    if rank.main:
        print("t_start at q bytes 0, 64, 128, 192, 255:", [int(dec.t_start[i]) for i in (0, 64, 128, 192, 255)])
    if args.no_weights:
        weights = torch.ones(dec.cfg.latent_channels)
    else:
        from ulic.vae.weights import load_vae

        probe = [v[:, :32, :32] for v in list(train.values())[:: max(1, len(train) // 4)][:4]]
        weights = channel_sensitivity(load_vae().decoder, probe)
    images = distributed.shard(sorted({k.rsplit("@", 1)[0] for k in train}), rank)  # all scales of an image together
    mine = {k: v for k, v in train.items() if k.rsplit("@", 1)[0] in set(images)}
    seed = args.seed + 1 + meta["step"] + distributed.SEED_PER_RANK * rank.rank
    return {
        "codec": codec,
        "dec": dec,
        "opt": opt,
        "ckpt": ckpt,
        "meta": meta,
        "weights": weights,
        "images": images,
        "crops": LatentCrops(mine, args.crop, seed),
        "loss": distributed.wrap(Stage2Loss(codec, dec, weights), rank),
    }


class Stage2Loss(nn.Module):
    """`losses` as one module (the trainable decoder inside), so DistributedDataParallel can wrap it."""

    weights: torch.Tensor

    def __init__(self, codec: nn.Module, dec: DiffusionDecoder, weights: torch.Tensor):
        super().__init__()
        self.codec, self.dec = codec, dec
        self.register_buffer("weights", weights, persistent=False)

    def forward(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        return losses(self.codec, self.dec, x0, self.weights)


def losses(codec, dec: DiffusionDecoder, x0: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """One stage-2 training batch: the denoiser's x0 estimate and the DRM's coarse latent
    against x0, at a random q and a random t in [0, t'(q)]."""
    a = alphas_cumprod()
    q = torch.rand(len(x0))
    z_c = codec.reconstruct(x0, q)
    t_start = dec.t_start[(q * Q_STEPS).round().long()]
    t = (torch.rand(len(x0)) * (t_start + 1).float()).floor().long().clamp(max=t_start)
    x_t = cdm_forward(x0, z_c, torch.randn_like(x0), a[t], a[t_start]).float()
    coarse, spatial, semantic = dec.drm(z_c, q)
    x0_hat = dec.denoiser(x_t, t, coarse, spatial, semantic)
    return {
        "loss_x0": wmse(x0_hat, x0, weights),
        "loss_coarse": wmse(coarse, x0, weights),
        "zc_mse": wmse(z_c, x0, weights),
    }


def train(args: argparse.Namespace, run: dict, rank: distributed.Rank) -> None:
    """The loop: one step per batch; rank 0 logs and writes checkpoints."""
    dec, opt, meta = run["dec"], run["opt"], run["meta"]
    t0, seconds0, step = time.time(), meta["seconds"], meta["step"]
    avg: dict[str, float] = {}
    with open(args.run / ("log.jsonl" if rank.main else f"log.rank{rank.rank}.jsonl"), "a") as log:
        while step < args.steps:
            for grp in opt.param_groups:
                grp["lr"] = lr_at(step, args.steps, args.lr)
            r = run["loss"](run["crops"].batch(args.batch))
            opt.zero_grad(set_to_none=True)
            (r["loss_x0"] + r["loss_coarse"]).backward()  # under DDP: gradients averaged over the ranks here
            torch.nn.utils.clip_grad_norm_(dec.parameters(), 1.0)
            opt.step()
            step += 1
            update_averages(avg, r)
            elapsed = seconds0 + time.time() - t0
            if step % LOG_EVERY == 0 or step == args.steps:
                log_line(log, step, elapsed, avg, args.steps)
            if (step % args.ckpt_every == 0 or step == args.steps) and rank.main:
                save_checkpoint(
                    run["ckpt"], {"model": dec}, {"opt": (opt, dec)}, {**meta, "step": step, "seconds": elapsed}
                )
            distributed.barrier(rank)  # nobody runs ahead of rank 0's checkpoint


def main(argv: list[str] | None = None) -> int:
    tune_allocator()
    args = parse(argv)
    rank = distributed.init()
    args.run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)  # the same initial weights (and t' calibration crops) on every rank
    random.seed(args.seed)
    run = build(args, rank)
    torch.manual_seed(args.seed + run["meta"]["step"] + distributed.SEED_PER_RANK * rank.rank)  # different q, t, noise
    train(args, run, rank)
    if rank.distributed:
        distributed.write_ranks(args.run, run["dec"], run["images"], rank)
    distributed.finish(rank)
    return 0


if __name__ == "__main__":
    sys.exit(main())
