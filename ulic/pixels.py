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
    """[0, 1] tensor -> float64 (1, 3, H, W) tensor of integer values 0..255: exactly the pixels
    `to_pil` writes (scaled and rounded in float32, the decoders' precision; rounding the same
    values in float64 can land the other side of .5 and made PSNR differ from the PNG's)."""
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[1] != 3:
        raise UlicError(f"expected an RGB image tensor (1, 3, H, W), got shape {tuple(x.shape)}")
    return (x.detach().float().clamp(0, 1) * DATA_RANGE).round().double()


def uint8_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images rounded to 8 bits; UlicError if their sizes differ."""
    a, b = to_uint8_range(a), to_uint8_range(b)
    if a.shape != b.shape:
        raise UlicError(f"image sizes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return a, b


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean squared error over all RGB samples, on the 0..255 scale."""
    a, b = uint8_pair(a, b)
    return float(((a - b) ** 2).mean())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of one image pair (RGB, 8-bit, peak 255; MSE over all three channels).
    Identical images give +inf; a data set's PSNR is the mean of the per-image values."""
    m = mse(a, b)
    return math.inf if m == 0 else 10 * math.log10(DATA_RANGE**2 / m)
