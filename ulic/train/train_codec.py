"""Stage 1 training: the variable-rate latent codec on cached TAEF2 latents.

Loss per sample: bpp(y, z) + lambda(q) * MSE(z_c, x) in latent space, q ~ U[0, 1].
Checkpoints (safetensors + JSON, no pickle) are written atomically and resumed automatically.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ulic.codec.model import CodecConfig, LatentCodec, lmbda_of
from ulic.vae.taef2 import decode_pixels

CROP = 32  # latent positions per crop side (256 image pixels)


class LatentCrops:
    """Random crops and horizontal flips of cached latents, sampled in proportion to area."""

    def __init__(self, latents: dict[str, torch.Tensor], crop: int, seed: int):
        self.items = [v for v in latents.values() if min(v.shape[1:]) >= crop]
        area = torch.tensor([float(v.shape[1] * v.shape[2]) for v in self.items])
        self.weights = area / area.sum()
        self.crop = crop
        self.gen = torch.Generator().manual_seed(seed)

    def batch(self, n: int) -> torch.Tensor:
        idx = torch.multinomial(self.weights, n, replacement=True, generator=self.gen)
        out = []
        for i in idx.tolist():
            v = self.items[i]
            top = int(torch.randint(0, v.shape[1] - self.crop + 1, (1,), generator=self.gen))
            left = int(torch.randint(0, v.shape[2] - self.crop + 1, (1,), generator=self.gen))
            c = v[:, top:top + self.crop, left:left + self.crop].float()
            if torch.rand(1, generator=self.gen) < 0.5:
                c = c.flip(-1)
            out.append(c)
        return torch.stack(out)  # (n, 32, crop, crop)


def split(latents: dict[str, torch.Tensor], n_val: int) -> tuple[dict, dict]:
    """Hold out the first n_val BSDS500 'val_' images (scale 0) for validation."""
    val_keys = sorted(k for k in latents if "val_" in k and k.endswith("@0"))[:n_val]
    stems = {k.rsplit("@", 1)[0] for k in val_keys}
    train = {k: v for k, v in latents.items() if k.rsplit("@", 1)[0] not in stems}
    return train, {k: latents[k] for k in val_keys}


@torch.no_grad()
def channel_sensitivity(decoder: torch.nn.Module, latents: list[torch.Tensor], eps: float = 0.05) -> torch.Tensor:
    """(32,) pixel MSE per unit of latent MSE when white noise perturbs one latent channel,
    measured through the frozen VAE decoder and normalised to mean 1: a cheap per-channel
    weighting that makes latent MSE a closer proxy of pixel MSE."""
    g = torch.Generator().manual_seed(0)
    sens = torch.zeros(latents[0].shape[0])
    for x in latents:
        x = x[None].float()
        ref = decoder(x)
        for c in range(x.shape[1]):
            noise = torch.zeros_like(x)
            noise[:, c] = torch.randn(x.shape[2:], generator=g) * eps
            sens[c] += (decoder(x + noise) - ref).pow(2).mean() / noise.pow(2).mean()
    return sens / sens.mean()


def rd_loss(codec: LatentCodec, x: torch.Tensor, q: torch.Tensor,
            decoder: torch.nn.Module | None = None, latent_weight: float = 0.02,
            channel_weights: torch.Tensor | None = None, bf16: bool = False) -> dict[str, torch.Tensor]:
    """bpp + lambda(q) * D. D is latent MSE (optionally weighted per channel), or (with the
    frozen VAE decoder) pixel MSE against the VAE's own reconstruction plus latent_weight *
    latent MSE. bf16 runs only the VAE decoder in bfloat16; rates stay float32."""
    out = codec(x, q)
    pixels = x.shape[2] * x.shape[3] * 64
    bits = -(out["y_likelihoods"].log2().flatten(1).sum(1) + out["z_likelihoods"].log2().flatten(1).sum(1))
    bpp = bits / pixels
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
def validate(codec: LatentCodec, val: dict[str, torch.Tensor],
             decoder: torch.nn.Module | None = None) -> dict[str, float]:
    """Mean bpp, latent MSE (and pixel PSNR with the decoder) at q = 0, 0.5 and 1."""
    codec.eval()
    res: dict[str, float] = {}
    for qv in (0.0, 0.5, 1.0):
        sums: dict[str, float] = {}
        for v in val.values():
            h, w = (v.shape[1] // 16) * 16, (v.shape[2] // 16) * 16
            x = v[None, :, :h, :w].float()
            torch.manual_seed(0)
            r = rd_loss(codec, x, torch.full((1,), qv), decoder)
            for k in ("bpp", "mse", "psnr"):
                if k in r:
                    sums[k] = sums.get(k, 0.0) + float(r[k]) / len(val)
        res.update({f"q{qv:g}_{k}": v for k, v in sums.items()})
    codec.train()
    return res


def save_checkpoint(path: Path, codec: LatentCodec, opt: torch.optim.Optimizer, meta: dict) -> None:
    tensors = {f"model.{k}": v.contiguous() for k, v in codec.state_dict().items()}
    names = {id(p): n for n, p in codec.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                tensors[f"opt.{names[id(p)]}.{k}"] = torch.as_tensor(v).contiguous()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)})
    os.replace(tmp, path)


def init_config(path: Path) -> dict:
    """The CodecConfig fields recorded with a training checkpoint or a shipped model folder."""
    if path.is_dir():
        return json.loads((path / "config.json").read_text())["codec"]
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["meta"]).get("config", {})


def load_init_weights(path: Path, codec: LatentCodec) -> None:
    """Start from a training checkpoint (.safetensors) or a shipped model folder."""
    if path.is_dir():
        from ulic.codec.store import load_model
        state = load_model(str(path)).codec.state_dict()
    else:
        t = load_file(str(path))
        state = {k[6:]: v for k, v in t.items() if k.startswith("model.")}
    codec.load_state_dict(state, strict=True)


def load_checkpoint(path: Path, codec: LatentCodec, opt: torch.optim.Optimizer) -> dict:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
    t = load_file(str(path))
    codec.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")}, strict=True)
    params = dict(codec.named_parameters())
    for k, v in t.items():
        if k.startswith("opt."):
            name, field = k[4:].rsplit(".", 1)
            opt.state[params[name]][field] = v
    return meta


def update_averages(avg: dict[str, float], values: dict[str, torch.Tensor], decay: float = 0.98) -> None:
    """Exponential moving averages of logged training values, in place."""
    for k, v in values.items():
        v = float(v.detach())
        avg[k] = decay * avg.get(k, v) + (1 - decay) * v


def lr_at(step: int, total: int, base: float) -> float:
    warm = min(1.0, (step + 1) / 200)
    return base * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--latents", type=Path, required=True, help="cache from ulic.train.latents")
    ap.add_argument("--run", type=Path, required=True, help="folder for checkpoints and logs")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=str, default="{}", help="JSON overrides of CodecConfig")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from these weights: a checkpoint or a shipped model folder")
    ap.add_argument("--distortion", choices=("latent", "pixel"), default="latent",
                    help="pixel: MSE through the frozen TAEF2 decoder (slower, better PSNR)")
    ap.add_argument("--fast-lr-scale", type=float, default=1.0,
                    help="learning-rate factor for the hyper-latent prior and the gain vectors: few "
                         "parameters that must move far when fine-tuning at a low learning rate")
    ap.add_argument("--bf16", action="store_true",
                    help="pixel distortion: run the frozen VAE decoder in bfloat16 (fast with AVX512-BF16)")
    ap.add_argument("--crop", type=int, default=CROP, help="latent crop side (x8 pixels)")
    ap.add_argument("--n-val", type=int, default=16)
    ap.add_argument("--weighted", action="store_true",
                    help="latent distortion: weight channels by their pixel sensitivity (needs TAEF2)")
    args = ap.parse_args(argv)

    args.run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    cfg = CodecConfig(**json.loads(args.config))
    codec = LatentCodec(cfg)
    fast = {id(p) for p in (*codec.prior.parameters(), codec.log_zgain, codec.log_zigain,
                            codec.log_gain, codec.log_igain)}
    opt = torch.optim.Adam([
        {"params": [p for p in codec.parameters() if id(p) not in fast], "lr_scale": 1.0},
        {"params": [p for p in codec.parameters() if id(p) in fast], "lr_scale": args.fast_lr_scale},
    ], lr=args.lr)
    ckpt = args.run / "checkpoint.safetensors"
    meta = {"step": 0, "seconds": 0.0, "config": json.loads(args.config)}
    if ckpt.exists():
        meta = load_checkpoint(ckpt, codec, opt)
    elif args.init is not None:
        load_init_weights(args.init, codec)
        meta["init"] = str(args.init)
    if ckpt.exists():
        print(f"resumed at step {meta['step']}", flush=True)
        torch.manual_seed(args.seed + meta["step"])
    decoder, weights = None, None
    train, val = split(load_file(str(args.latents)), n_val=args.n_val)
    if args.distortion == "pixel" or args.weighted:
        from ulic.weights import load_vae
        decoder = load_vae().decoder
        if args.bf16:
            decoder = decoder.to(memory_format=torch.channels_last)
    if args.weighted and args.distortion == "latent":
        probe = [v[:, :32, :32] for v in list(train.values())[::max(1, len(train) // 4)][:4]]
        weights = channel_sensitivity(decoder, probe)
        print("channel weights", [round(float(w), 3) for w in weights], flush=True)
        decoder = None
    crops = LatentCrops(train, args.crop, args.seed + meta["step"])
    log = open(args.run / "log.jsonl", "a")
    t0, seconds0 = time.time(), meta["seconds"]
    step = meta["step"]
    avg = {}
    while step < args.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr) * g["lr_scale"]
        x = crops.batch(args.batch)
        r = rd_loss(codec, x, torch.rand(args.batch), decoder, channel_weights=weights, bf16=args.bf16)
        opt.zero_grad(set_to_none=True)
        r["loss"].backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
        opt.step()
        step += 1
        update_averages(avg, r)
        elapsed = seconds0 + time.time() - t0
        if step % 20 == 0:
            print(f"step {step}/{args.steps} {elapsed:.0f}s " +
                  " ".join(f"{k} {v:.4f}" for k, v in avg.items()), flush=True)
        rec = {"step": step, "seconds": round(elapsed, 1), **{k: round(v, 5) for k, v in avg.items()}}
        if step % args.val_every == 0 or step == args.steps:
            rec.update({f"val_{k}": round(v, 5) for k, v in validate(codec, val, decoder).items()})
            print(rec, flush=True)
        if step % 20 == 0 or "val_q0_bpp" in rec:
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % args.ckpt_every == 0 or step == args.steps:
            save_checkpoint(ckpt, codec, opt, {**meta, "step": step, "seconds": elapsed})
    return 0


if __name__ == "__main__":
    sys.exit(main())
