"""Density models for the quantized latents, their training likelihoods and integer coding tables.

- `FactorizedPrior`: a learned per-channel density for the hyper-latent z (Balle et al. 2018,
  appendix 6.1). Coding uses an integer frequency table per channel, built once at export.
- Gaussian conditional for y: per element a mean and a scale. Scales are integer indexes into
  the fixed log-spaced `scale_table`; each index owns one integer frequency table.

Frequency tables are integers summing to 2**PRECISION with every symbol >= 1, so encoder and
decoder build identical models from the stored tables, independent of floating-point details.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PRECISION = 16  # frequency tables sum to 2**16
LIKELIHOOD_BOUND = 1e-9


def scale_table(n: int = 64, s_min: float = 0.11, s_max: float = 48.0) -> torch.Tensor:
    """The n log-spaced Gaussian scales that scale indexes point into (float64)."""
    return torch.exp(torch.linspace(math.log(s_min), math.log(s_max), n, dtype=torch.float64))


def quantize_pmf(pmf: np.ndarray) -> np.ndarray:
    """Rows of probabilities -> int64 frequencies, each >= 1, each row summing to 2**PRECISION."""
    pmf = np.asarray(pmf, dtype=np.float64)
    pmf = pmf / pmf.sum(axis=-1, keepdims=True)
    total = 1 << PRECISION
    n = pmf.shape[-1]
    freq = np.floor(pmf * (total - n)).astype(np.int64) + 1
    deficit = total - freq.sum(axis=-1)  # >= 0: hand the rest to the most likely symbols
    order = np.argsort(-pmf, axis=-1, kind="stable")
    for row in np.ndindex(freq.shape[:-1]):
        d = int(deficit[row])
        freq[row][order[row][: d % n]] += 1
        freq[row] += d // n
    assert (freq.sum(axis=-1) == total).all()
    return freq


def gaussian_tables(scales: torch.Tensor, radius: int) -> torch.Tensor:
    """(L, 2*radius+1) int32 frequencies of round(N(0, s)) clipped to [-radius, radius]."""
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    s = scales.to(torch.float64)[:, None]
    upper = 0.5 * torch.erfc(-(k + 0.5) / (s * math.sqrt(2)))
    lower = 0.5 * torch.erfc(-(k - 0.5) / (s * math.sqrt(2)))
    pmf = (upper - lower).clamp_min(0)
    return torch.from_numpy(quantize_pmf(pmf.numpy())).to(torch.int32)


def gaussian_likelihood(y: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """P(round(y)) under N(mean, scale) for the noisy or rounded y used in training."""
    v = (y - mean).abs()
    c = 1 / math.sqrt(2)
    upper = 0.5 * torch.erfc(-(0.5 - v) / scale * c)
    lower = 0.5 * torch.erfc(-(-0.5 - v) / scale * c)
    return (upper - lower).clamp_min(LIKELIHOOD_BOUND)


class FactorizedPrior(nn.Module):
    """Per-channel learned density p(z_c); `likelihood(z)` is P of the unit bin around z."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """x: (C, 1, n) -> logit of the CDF at x, (C, 1, n)."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases, strict=False)):
            x = torch.matmul(F.softplus(m.to(x.dtype)), x) + b.to(x.dtype)
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i].to(x.dtype)) * torch.tanh(x)
        return x

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, C, h, w) -> likelihoods of the same shape."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lo, hi = self.logits_cdf(v - 0.5), self.logits_cdf(v + 0.5)
        sign = -torch.sign(lo + hi).detach()  # evaluate in the tail where sigmoid is precise
        p = (torch.sigmoid(sign * hi) - torch.sigmoid(sign * lo)).abs()
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3).clamp_min(LIKELIHOOD_BOUND)

    @torch.no_grad()
    def tables(self, radius: int) -> torch.Tensor:
        """(C, 2*radius+1) int32 frequencies of round(z) clipped to [-radius, radius]."""
        c = self.matrices[0].shape[0]
        k = torch.arange(-radius, radius + 2, dtype=torch.float64) - 0.5  # bin edges
        cdf = torch.sigmoid(self.logits_cdf(k.expand(c, 1, -1).contiguous()))[:, 0]  # (C, n+1)
        pmf = (cdf[:, 1:] - cdf[:, :-1]).clamp_min(0)
        pmf[:, 0] += cdf[:, 0]  # tails fold into the end symbols
        pmf[:, -1] += 1 - cdf[:, -1]
        return torch.from_numpy(quantize_pmf(pmf.numpy())).to(torch.int32)
