"""Refit the hyper-latent prior of a trained codec to its own z, everything else frozen.

The factorized prior learns slowly: after a short training run it is still much wider than the
z it codes, and z then costs a fixed few hundred bytes per image at every rate. Maximum
likelihood on z of the training latents (noise proxy, q ~ U[0, 1]) fixes that in a minute.
Writes a training checkpoint that `train_codec --init` and `export --checkpoint` accept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from ulic.codec.model import CodecConfig, LatentCodec
from ulic.train.common import LatentCrops, init_config, load_init_weights, save_checkpoint, split


def refit_prior(
    codec: LatentCodec, crops: LatentCrops, steps: int, batch: int, lr: float, log_every: int = 50
) -> list[float]:
    """Adam on the prior's parameters only; returns the logged bits per z element."""
    codec.requires_grad_(False)
    codec.prior.requires_grad_(True)
    opt = torch.optim.Adam(codec.prior.parameters(), lr=lr)
    history = []
    for step in range(1, steps + 1):
        x = crops.batch(batch)
        q = torch.rand(batch)
        with torch.no_grad():
            z_s = codec.h_a(codec.g_a(x)) * codec.gains(q).z  # (B, Cz, h/16, w/16)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, 2.0 * (1 - step / steps) + 0.05)
        loss = codec.z_bits(codec.quantize(z_s, "noise")).mean()  # bits per z element
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % log_every == 0:
            history.append(float(loss))
            print(f"step {step}/{steps} z bits/element {float(loss):.4f}", flush=True)
    codec.requires_grad_(True)
    return history


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--init", type=Path, required=True, help="checkpoint or shipped model folder")
    ap.add_argument("--latents", type=Path, required=True, help="cache from ulic.train.latents")
    ap.add_argument("--out", type=Path, required=True, help="checkpoint to write (.safetensors)")
    ap.add_argument("--config", type=str, default="{}", help="JSON overrides of CodecConfig")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64, help="latent crop side (x8 pixels)")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    overrides = {**init_config(args.init), **json.loads(args.config)}
    codec = LatentCodec(CodecConfig(**overrides))
    load_init_weights(args.init, codec)
    train, _ = split(load_file(str(args.latents)), n_val=16)
    t0 = time.time()
    history = refit_prior(codec, LatentCrops(train, args.crop, args.seed), args.steps, args.batch, args.lr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.Adam(codec.parameters())  # empty state: training starts afresh
    save_checkpoint(
        args.out,
        {"model": codec},
        {"opt": (opt, codec)},
        {
            "step": 0,
            "seconds": round(time.time() - t0, 1),
            "config": overrides,
            "init": str(args.init),
            "refit_prior": {"steps": args.steps, "bits": history[-1:]},
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
