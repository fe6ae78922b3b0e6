"""What every training script shares: latent crops and the validation split, checkpoints that
resume (safetensors + JSON metadata, no pickle, written atomically), the learning-rate schedule,
moving averages and the JSON-lines log, and the per-channel pixel sensitivity of the latent.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TextIO

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ulic.atomic import atomic_path
from ulic.train import distributed

WARMUP_STEPS = 200  # linear learning-rate warm-up
LR_FLOOR = 0.05  # the cosine decays to this fraction of the base rate


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
            c = v[:, top : top + self.crop, left : left + self.crop].float()
            if torch.rand(1, generator=self.gen) < 0.5:
                c = c.flip(-1)
            out.append(c)
        return torch.stack(out)  # (n, 32, crop, crop)


class PixelCrops:
    """Pixel crops with their latents, from `ulic.train.pixel_crops`. A rank of a distributed
    run draws only from its shard of the crops (every crop in exactly one shard) and with its
    own seed."""

    def __init__(self, path: Path, seed: int, rank: distributed.Rank, vocabulary: int | None = None):
        t = load_file(str(path))
        self.pixels, self.latents = t["pixels"], t["latents"]
        self.val_pixels, self.val_latents = t["val_pixels"], t["val_latents"]
        self.concepts = self.val_concepts = None  # (N, P/8, P/8) uint8, read when `vocabulary` is given
        if vocabulary is not None:
            with safe_open(str(path), "pt") as f:
                found = (f.metadata() or {}).get("vocabulary_id")
            if "concepts" not in t or found != str(vocabulary):
                raise SystemExit(
                    f"{path} holds no concept maps of vocabulary {vocabulary} (found {found}): "
                    "rebuild it with `python -m ulic.train.pixel_crops --concepts`"
                )
            self.concepts, self.val_concepts = t["concepts"], t["val_concepts"]
        self.shard = distributed.shard_indices(len(self.pixels), rank)
        self.indices = torch.tensor(self.shard)
        self.gen = torch.Generator().manual_seed(seed + distributed.SEED_PER_RANK * rank.rank)

    def batch(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(pixels (n, 3, P, P) in [0, 1], latents (n, 32, P/8, P/8), concept maps (n, P/8, P/8)
        int64 or None) on `device`."""
        idx = self.indices[torch.randint(len(self.indices), (n,), generator=self.gen)]
        concepts = self.concepts[idx].to(device).long() if self.concepts is not None else None
        return self.pixels[idx].to(device).float() / 255, self.latents[idx].to(device).float(), concepts


def split(latents: dict[str, torch.Tensor], n_val: int) -> tuple[dict, dict]:
    """Hold out the first n_val BSDS500 'val_' images (scale 0) for validation."""
    val_keys = sorted(k for k in latents if "val_" in k and k.endswith("@0"))[:n_val]
    stems = {k.rsplit("@", 1)[0] for k in val_keys}
    train = {k: v for k, v in latents.items() if k.rsplit("@", 1)[0] not in stems}
    return train, {k: latents[k] for k in val_keys}


@torch.no_grad()
def channel_sensitivity(decoder: nn.Module, latents: list[torch.Tensor], eps: float = 0.05) -> torch.Tensor:
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


# -- checkpoints ---------------------------------------------------------------------------------
Optimizers = dict[str, tuple[torch.optim.Optimizer, nn.Module]]


def save_checkpoint(path: Path, modules: dict[str, nn.Module], optimizers: Optimizers, meta: dict) -> None:
    """Modules' weights as `name.key` and each optimiser's state as `opt_name.param_name.field`
    (the optimiser's parameters named through the module it trains), meta as JSON."""
    tensors = {}
    for name, module in modules.items():
        tensors.update({f"{name}.{k}": v.contiguous() for k, v in module.state_dict().items()})
    for name, (opt, module) in optimizers.items():
        names = {id(p): n for n, p in module.named_parameters()}
        for group in opt.param_groups:
            for p in group["params"]:
                for k, v in opt.state.get(p, {}).items():
                    tensors[f"{name}.{names[id(p)]}.{k}"] = torch.as_tensor(v).contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)})


def checkpoint_meta(path: Path) -> dict:
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["meta"])


def load_checkpoint(
    path: Path, modules: dict[str, nn.Module], optimizers: Optimizers, device: torch.device | None = None
) -> dict:
    """Restore what `save_checkpoint` wrote (strict keys for the modules); optimiser moments go
    to `device` (Adam's step counts stay on the CPU, where it keeps them); returns meta."""
    t = load_file(str(path))
    for name, module in modules.items():
        module.load_state_dict({k[len(name) + 1 :]: v for k, v in t.items() if k.startswith(name + ".")}, strict=True)
    for name, (opt, module) in optimizers.items():
        params = dict(module.named_parameters())
        for k, v in t.items():
            if k.startswith(name + "."):
                pname, field = k[len(name) + 1 :].rsplit(".", 1)
                opt.state[params[pname]][field] = v if device is None or field == "step" else v.to(device)
    return checkpoint_meta(path)


def init_config(path: Path) -> dict:
    """The CodecConfig fields recorded with a training checkpoint or a shipped model folder."""
    if path.is_dir():
        return json.loads((path / "config.json").read_text())["codec"]
    return checkpoint_meta(path).get("config", {})


def load_init_weights(path: Path, codec: nn.Module) -> None:
    """Start from a training checkpoint (.safetensors) or a shipped model folder."""
    if path.is_dir():
        from ulic.model_store import load_model

        state = load_model(str(path)).codec.state_dict()
    else:
        t = load_file(str(path))
        state = {k[6:]: v for k, v in t.items() if k.startswith("model.")}
    codec.load_state_dict(state, strict=True)


# -- command line ---------------------------------------------------------------------------------
def add_run_arguments(ap: argparse.ArgumentParser, steps: int, batch: int, lr: float, ckpt_every: int) -> None:
    """The options every training script has, with that script's defaults."""
    ap.add_argument(
        "--run-dir",
        "--run",
        dest="run",
        type=Path,
        required=True,
        help="folder for checkpoints and logs (a rerun resumes from its checkpoint)",
    )
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--ckpt-every", type=int, default=ckpt_every)
    ap.add_argument("--seed", type=int, default=0)


# -- schedule and logging ------------------------------------------------------------------------
def lr_at(step: int, total: int, base: float) -> float:
    """Linear warm-up, then a cosine from base down to LR_FLOOR * base at `total`."""
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    return base * warm * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0))))


def update_averages(avg: dict[str, float], values: dict[str, torch.Tensor], decay: float = 0.98) -> None:
    """Exponential moving averages of logged training values, in place."""
    for k, v in values.items():
        x = float(v.detach())
        avg[k] = decay * avg.get(k, x) + (1 - decay) * x


def log_line(log: TextIO, step: int, elapsed: float, values: dict[str, float], total: int | None = None) -> None:
    """One progress line on stdout and one JSON record in the run's log."""
    at = f"{step}/{total}" if total else f"{step}"
    print(f"step {at} {elapsed:.0f}s " + " ".join(f"{k} {v:.4f}" for k, v in values.items()), flush=True)
    log.write(
        json.dumps({"step": step, "seconds": round(elapsed, 1), **{k: round(v, 5) for k, v in values.items()}}) + "\n"
    )
    log.flush()
