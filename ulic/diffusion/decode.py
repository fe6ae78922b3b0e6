"""Decoding a compressed latent z_c with the DRM (`fast`) or the CDM sampler (`diffusion`)."""

from __future__ import annotations

import hashlib

import torch

from ulic.codec.hyperprior import Q_STEPS
from ulic.diffusion.networks import DiffusionDecoder
from ulic.diffusion.schedule import DDIM, alphas_cumprod, ddim_timesteps, start_latent
from ulic.timing import StageTimer

_A = alphas_cumprod()


def seed_from_bytes(data: bytes) -> int:
    """The sampler's noise seed: the first 8 bytes of the file's sha256, so decoding is
    reproducible from the file alone."""
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big") & (2**63 - 1)


def sample(
    dec: DiffusionDecoder,
    z_c: torch.Tensor,
    q_byte: int,
    steps: int,
    eps: torch.Tensor,
    realism: float | torch.Tensor | None = None,
    timer: StageTimer | None = None,
    concepts: torch.Tensor | None = None,
) -> torch.Tensor:
    """The decoding path in latent space, differentiable (stage 3 trains through it): z_c
    (B, 32, h, w) -> refined latent (B, 32, h, w), one quality byte for the batch; steps = 0
    gives the DRM's coarse latent; eps (B, 32, h, w) is the start noise; realism: one R for
    the batch or (B,), read only by a decoder trained with it; timer: marks "drm" and
    "diffusion_step_<i>"; concepts (B, h, w): the concept id under each position, read only by a
    decoder trained with them (None: unknown)."""
    b = z_c.shape[0]
    dev = z_c.device
    q = torch.full((b,), q_byte / Q_STEPS, device=dev)
    r = realism if realism is None or isinstance(realism, torch.Tensor) else torch.full((b,), float(realism))
    r = r.to(dev) if r is not None else None
    coarse, spatial, semantic = dec.drm(z_c, q, r, concepts)
    if timer is not None:
        timer.mark("drm")
    if steps <= 0:
        return coarse
    t0 = int(dec.t_start[q_byte])
    x = start_latent(z_c, eps, _A[t0].reshape(1).to(dev))
    ddim = DDIM(_A)
    ts = ddim_timesteps(t0, steps)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        x0_hat = dec.denoiser(x, torch.full((b,), t, device=dev), coarse, spatial, semantic, r)
        x = ddim.step(x, x0_hat, t, t_prev)
        if timer is not None:
            timer.mark(f"diffusion_step_{i + 1}")
    return x


@torch.no_grad()
def refine(
    dec: DiffusionDecoder,
    z_c: torch.Tensor,
    q_byte: int,
    steps: int,
    seed: int | list[int],
    realism: float | None = None,
    timer: StageTimer | None = None,
    concepts: torch.Tensor | None = None,
) -> torch.Tensor:
    """z_c (B, 32, h, w) -> refined latent (B, 32, h, w), each image's start noise seeded by its
    seed (one int for B = 1); steps = 0 gives the DRM's coarse latent; concepts as `sample`."""
    seeds = [seed] if isinstance(seed, int) else list(seed)
    if len(seeds) != z_c.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for a batch of {z_c.shape[0]}")
    eps = z_c
    if steps > 0:  # drawn on the CPU and moved: the same noise on every device
        draws = [
            torch.randn((1, *z_c.shape[1:]), generator=torch.Generator().manual_seed(s), dtype=z_c.dtype) for s in seeds
        ]
        eps = torch.cat(draws).to(z_c.device)
    return sample(dec, z_c, q_byte, steps, eps, realism, timer, concepts)
