"""Decoding a compressed latent z_c with the DRM (`fast`) or the CDM sampler (`diffusion`)."""
from __future__ import annotations

import hashlib

import torch

from ulic.diffusion.networks import DiffusionDecoder
from ulic.diffusion.schedule import DDIM, alphas_cumprod, ddim_timesteps, start_latent

_A = alphas_cumprod()


def seed_from_bytes(data: bytes) -> int:
    """The sampler's noise seed: the first 8 bytes of the file's sha256, so decoding is
    reproducible from the file alone."""
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big") & (2**63 - 1)


@torch.no_grad()
def refine(dec: DiffusionDecoder, z_c: torch.Tensor, q_byte: int, steps: int, seed: int) -> torch.Tensor:
    """z_c (1, 32, h, w) -> refined latent (1, 32, h, w); steps = 0 gives the DRM's coarse latent."""
    q = torch.full((z_c.shape[0],), q_byte / 255.0)
    coarse, spatial, semantic = dec.drm(z_c, q)
    if steps <= 0:
        return coarse
    t0 = int(dec.t_start[q_byte])
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(z_c.shape, generator=g, dtype=z_c.dtype)
    x = start_latent(z_c, eps, _A[t0].reshape(1))
    ddim = DDIM(_A)
    ts = ddim_timesteps(t0, steps)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        x0_hat = dec.denoiser(x, torch.full((z_c.shape[0],), t), coarse, spatial, semantic)
        x = ddim.step(x, x0_hat, t, t_prev)
    return x
