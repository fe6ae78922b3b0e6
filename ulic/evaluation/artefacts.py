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
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def grid_amplitude(image: torch.Tensor, period: int = SCALE, tile: int = TILE) -> tuple[float, float]:
    """(rows, columns) RMS amplitude in grey levels of the pattern with `period` px, of one RGB
    image (1, 3, H, W) or (3, H, W) in [0, 1]; rows: the pattern along y (horizontal stripes)."""
    x = to_uint8_range(image).reshape(-1, *image.shape[-3:])[0]  # (3, H, W) on 0..255
    need = tile + 2 * period  # one period left out at each border, where the moving average sees padding
    if x.shape[1] < need or x.shape[2] < need:
        raise UlicError(f"image {x.shape[1]}x{x.shape[2]} too small for grid8 (needs {need} px per side)")
    y = torch.einsum("c,chw->hw", torch.tensor(LUMA, dtype=x.dtype), x)
    return _along_rows(y, period, tile), _along_rows(y.T, period, tile)


def _along_rows(y: torch.Tensor, period: int, tile: int) -> float:
    box = F.avg_pool1d(F.pad(y.T[:, None], (period // 2, period - 1 - period // 2), mode="reflect"), period, 1)
    g = (y - box[:, 0].T)[period:-period, period:-period]  # detail and any period-`period` pattern along y
    h, w = (g.shape[0] // tile) * tile, (g.shape[1] // tile) * tile
    t = g[:h, :w].reshape(h // tile, tile // period, period, w // tile, tile)  # (ty, cycle, phase, tx, col)
    phases = t.mean((1, 4))  # (ty, phase, tx)
    phases = phases - phases.mean(1, keepdim=True)
    return float(phases.pow(2).mean().sqrt())


def grid8(original: torch.Tensor, decoded: torch.Tensor) -> float:
    """The RMS amplitude (grey levels) of the 8-px pattern `decoded` adds to `original`; negative
    when it has less (see the module docstring)."""
    if original.shape != decoded.shape:
        raise UlicError(f"image sizes differ: {tuple(original.shape)} vs {tuple(decoded.shape)}")
    energy = sum(v * v for v in grid_amplitude(decoded)) - sum(v * v for v in grid_amplitude(original))
    return float(math.copysign(math.sqrt(abs(energy)), energy))
