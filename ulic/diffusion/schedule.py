"""Noise schedule, the CDM forward process and the deterministic DDIM sampler.

Notation (used throughout ulic.diffusion): `a[t]` is the cumulative product of (1 - beta) of a
T = 1000 step "scaled linear" schedule (betas from 0.00085 to 0.012, as in latent diffusion), so
a standard forward process is x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps.

CDM (ResULIC): decoding starts at t' < T from the noised compressed latent
    x_t' = sqrt(a_t') z_c + sqrt(1 - a_t') eps,
and training uses, for t in [0, t'],
    x_t = sqrt(a_t) x0 + sqrt(1 - a_t) [eps + (z_c - x0) / sqrt(1 / a_t' - 1)],
which equals that start at t = t'. The bracket is the "effective noise" e; for all t <= t' the
sample is a standard forward-process sample of x0 with noise e, so DDIM applies unchanged.
"""

from __future__ import annotations

import torch

T = 1000


def alphas_cumprod(n: int = T, beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """(n,) float64 cumulative alphas of the scaled-linear schedule."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def _b(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def effective_noise(x0: torch.Tensor, z_c: torch.Tensor, eps: torch.Tensor, a_start: torch.Tensor) -> torch.Tensor:
    """e = eps + (z_c - x0) / sqrt(1 / a_t' - 1); a_start (B,) are the a[t'] values."""
    return eps + (z_c - x0) / _b(torch.sqrt(1 / a_start - 1), x0)


def cdm_forward(
    x0: torch.Tensor, z_c: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor, a_start: torch.Tensor
) -> torch.Tensor:
    """x_t of the CDM forward process; a_t and a_start are (B,) cumulative alphas."""
    e = effective_noise(x0, z_c, eps, a_start)
    return _b(a_t.sqrt(), x0) * x0 + _b((1 - a_t).sqrt(), x0) * e


def start_latent(z_c: torch.Tensor, eps: torch.Tensor, a_start: torch.Tensor) -> torch.Tensor:
    """x_t' = sqrt(a_t') z_c + sqrt(1 - a_t') eps: where decoding starts."""
    return _b(a_start.sqrt(), z_c) * z_c + _b((1 - a_start).sqrt(), z_c) * eps


def ddim_timesteps(t_start: int, steps: int) -> list[int]:
    """steps evenly spaced timesteps from t_start down to (but excluding) -1."""
    steps = max(1, min(steps, t_start + 1))
    return [round(t_start * (steps - i) / steps) for i in range(steps)]


class DDIM:
    """Deterministic DDIM (eta = 0) with an x0-predicting model.

    step(x_t, x0_hat, t, t_prev): e_hat = (x_t - sqrt(a_t) x0_hat) / sqrt(1 - a_t);
    x_{t_prev} = sqrt(a_prev) x0_hat + sqrt(1 - a_prev) e_hat, and x0_hat itself when t_prev < 0.
    """

    def __init__(self, a: torch.Tensor | None = None):
        self.a = alphas_cumprod() if a is None else a

    def step(self, x_t: torch.Tensor, x0_hat: torch.Tensor, t: int, t_prev: int) -> torch.Tensor:
        if t_prev < 0:
            return x0_hat
        a_t, a_prev = float(self.a[t]), float(self.a[t_prev])
        e_hat = (x_t - a_t**0.5 * x0_hat) / (1 - a_t) ** 0.5
        return a_prev**0.5 * x0_hat + (1 - a_prev) ** 0.5 * e_hat
