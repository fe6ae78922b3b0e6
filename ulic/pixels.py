"""Images as the 8-bit pixels a user sees: rounding and PSNR (the one PSNR of the project).

Tensors are (1, 3, H, W) or (3, H, W) with values in [0, 1]; they are rounded to 8 bits
(x * 255, round, clamp to 0..255) before any comparison, so scores are those of the PNG files.
"""

from __future__ import annotations

import math

import torch

from ulic.errors import UlicError

DATA_RANGE = 255.0  # the peak of 8-bit samples


def to_uint8_range(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] tensor -> float64 (1, 3, H, W) tensor of integer values 0..255."""
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[1] != 3:
        raise UlicError(f"expected an RGB image tensor (1, 3, H, W), got shape {tuple(x.shape)}")
    return (x.detach().double() * DATA_RANGE).round().clamp(0, DATA_RANGE)


def uint8_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images rounded to 8 bits; UlicError if their sizes differ."""
    a, b = to_uint8_range(a), to_uint8_range(b)
    if a.shape != b.shape:
        raise UlicError(f"image sizes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return a, b


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean squared error over all RGB samples, on the 0..255 scale; exact (an integer sum), so
    the same on every CPU and memory layout."""
    a, b = uint8_pair(a, b)
    d = (a - b).to(torch.int32)  # integers -255..255: the conversion is exact
    return float((d * d).sum(dtype=torch.int64)) / d.numel()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of one image pair (RGB, 8-bit, peak 255; MSE over all three channels).
    Identical images give +inf; a data set's PSNR is the mean of the per-image values."""
    m = mse(a, b)
    return math.inf if m == 0 else 10 * math.log10(DATA_RANGE**2 / m)
