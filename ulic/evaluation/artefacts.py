"""The latent-grid artefact score `grid8`: how much stronger the pattern that repeats every 8 px
(one latent cell of TAEF2) is in a decoded image than in its original.

Decoders that work on an 8x-downsampled latent can leave a pattern locked to that grid: a block
grid where the latent is off the VAE's manifold, or the horizontal stripes of the stage-3 pixel
decoder (report crops, water). Natural photos have no preferred 8-px period, so

    g = luma (0..255) minus its 8-px moving average along one axis      (removes all but the
                                                                         periodic part + detail)
    per 64 x 64 tile (the outer 8 px left out): the mean of g over each of the 8 phases (rows
        y = p mod 8), centred; its RMS over the phases is the tile's periodic amplitude
    A^2 = mean over tiles of amplitude^2, summed over rows and columns (grey levels^2)
    grid8 = sign(E) sqrt(|E|),  E = A^2(decoded) - A^2(original)

Content that happens to line up gives an original some amplitude (kodim13: 3.3 grey levels);
an added pattern adds its energy, so grid8 is the RMS amplitude, in grey levels, of the 8-px
pattern the decoder added (a sine of amplitude a scores a / sqrt 2); 0: as periodic as the
original, < 0: smoother. Tiles, not the whole image, because a pattern's phase drifts across
a picture.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ulic.errors import UlicError
from ulic.pixels import to_uint8_range
from ulic.vae.taef2 import SCALE

TILE = 64  # 8 periods per tile: enough for natural content to average out, short enough for drifting phase
LATTICE_TILE = 32  # the training loss's tile: 16 tiles per 128-px crop (the error has no content to average out)
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def grid_amplitude(image: torch.Tensor, period: int = SCALE, tile: int = TILE) -> tuple[float, float]:
    """(rows, columns) RMS amplitude in grey levels of the pattern with `period` px, of one RGB
    image (1, 3, H, W) or (3, H, W) in [0, 1]; rows: the pattern along y (horizontal stripes)."""
    x = to_uint8_range(image).reshape(-1, *image.shape[-3:])[0]  # (3, H, W) on 0..255
    need = tile + 2 * period  # one period left out at each border, where the moving average sees padding
    if x.shape[1] < need or x.shape[2] < need:
        raise UlicError(f"image {x.shape[1]}x{x.shape[2]} too small for grid8 (needs {need} px per side)")
    y = torch.einsum("c,chw->hw", torch.tensor(LUMA, dtype=x.dtype), x)
    rows, cols = (
        phase_pattern(detail(y, period, axis)[period:-period, period:-period], period, tile, axis) for axis in (-2, -1)
    )
    return float(rows.pow(2).mean().sqrt()), float(cols.pow(2).mean().sqrt())


def detail(x: torch.Tensor, period: int, axis: int) -> torch.Tensor:
    """(..., H, W) -> same shape: x minus its `period`-px moving average along `axis` (-2: y,
    -1: x), reflect-padded; keeps fine detail and any pattern of that period. Differentiable."""
    lo, hi = period // 2, period - 1 - period // 2
    flat = x.reshape(-1, 1, *x.shape[-2:])  # (N, 1, H, W)
    if axis == -2:
        box = F.avg_pool2d(F.pad(flat, (0, 0, lo, hi), mode="reflect"), (period, 1), 1)
    else:
        box = F.avg_pool2d(F.pad(flat, (lo, hi, 0, 0), mode="reflect"), (1, period), 1)
    return x - box.reshape(x.shape)


def phase_pattern(x: torch.Tensor, period: int, tile: int, axis: int) -> torch.Tensor:
    """(..., H, W) -> (..., H // tile, period, W // tile): per tile x tile block, the mean of x
    over each phase (index mod period) along `axis` (-2: rows, -1: columns), centred over the
    phases: the block's period-px pattern. Differentiable; the remainder past whole tiles is
    left out."""
    if axis == -1:
        x = x.transpose(-2, -1)
    h, w = (x.shape[-2] // tile) * tile, (x.shape[-1] // tile) * tile
    t = x[..., :h, :w].reshape(*x.shape[:-2], h // tile, tile // period, period, w // tile, tile)
    p = t.mean((-4, -1))  # (..., tiles down, phase, tiles across)
    return p - p.mean(-2, keepdim=True)


def lattice_loss(
    decoded: torch.Tensor, original: torch.Tensor, period: int = SCALE, tile: int = LATTICE_TILE
) -> torch.Tensor:
    """(B, C, H, W) pair in [0, 1] -> (B,): mean square of the `period`-px pattern (rows and
    columns, per tile) of the error decoded - original: the training counterpart of grid8, zero
    when the decoder adds no pattern locked to the latent grid. Differentiable."""
    if min(decoded.shape[-2:]) < tile:
        raise UlicError(f"crops of {tuple(decoded.shape[-2:])} px are too small for the lattice loss (tile {tile})")
    err = decoded - original
    rows, cols = (phase_pattern(detail(err, period, axis), period, tile, axis) for axis in (-2, -1))
    return rows.pow(2).flatten(1).mean(1) + cols.pow(2).flatten(1).mean(1)


def grid8(original: torch.Tensor, decoded: torch.Tensor) -> float:
    """The RMS amplitude (grey levels) of the 8-px pattern `decoded` adds to `original`; negative
    when it has less (see the module docstring)."""
    if original.shape != decoded.shape:
        raise UlicError(f"image sizes differ: {tuple(original.shape)} vs {tuple(decoded.shape)}")
    energy = sum(v * v for v in grid_amplitude(decoded)) - sum(v * v for v in grid_amplitude(original))
    return float(math.copysign(math.sqrt(abs(energy)), energy))
