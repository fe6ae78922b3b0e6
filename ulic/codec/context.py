"""Entropy context for the y symbols: fewer bytes for the same symbols, pixels unchanged.

The y channels are cut into SLICES groups coded one after another (channel-conditional,
Minnen and Singh 2020), each in two checkerboard halves, the second seeing the first (He et
al. 2021). Per slice a small network reads what the decoder already has, in quarter units:

    earlier slices' y_hat (B, c k, h, w), this slice's hyperprior mean and scale (B, 2c, h, w),
    this slice's first half (B, c, h, w; zero while the first half itself is coded), the q byte

and moves the Gaussian of each symbol: a mean shift (in symbols, kept to quarter steps within
MAX_SHIFT) and a scale-index offset. The symbols themselves stay `round(y_s - mean)` of the
hyperprior alone, so y_hat, z_c and every decoded pixel are exactly as without a context, and
every training path that simulates y_hat stays right; only the probabilities improve.

Training uses `SliceContext` in float (`ulic.train.train_context`); coding uses its integer
twin (`ulic.codec.hyper_synthesis.integerize`, exact on every machine) and tables for the four
quarter offsets (`shift_tables`), both stored in the model's coding state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ulic.codec.entropy_models import quantize_pmf
from ulic.codec.hyper_synthesis import ConvStack
from ulic.codec.layers import zero_init

SLICES = 4  # channel groups of y
QUARTER = 4  # mean shifts are coded in steps of 1 / QUARTER symbol
MAX_SHIFT = 8  # whole symbols a mean may move either way
WIDTH = 96  # hidden channels per slice
UPSAMPLE = (False, False, False)  # the integer twin's layers: no resampling


def anchors(h: int, w: int) -> torch.Tensor:
    """(h, w) bool checkerboard: True where a slice's first half is coded."""
    return (torch.arange(h)[:, None] + torch.arange(w)[None]) % 2 == 0


class ContextNet(ConvStack):
    """One slice's network: (B, c k + 3c + 1, h, w) inputs -> mean shift (B, c, h, w) and scale-index
    offset (B, c, h, w); zero at the start (the hyperprior's own probabilities)."""

    UPSAMPLE_BEFORE = UPSAMPLE

    def __init__(self, c_in: int, c: int, width: int = WIDTH):
        last = nn.Conv2d(width, 2 * c, 1)
        zero_init(last)
        super().__init__(c, [nn.Conv2d(c_in, width, 1), nn.Conv2d(width, width, 3, padding=1), last])


class SliceContext(nn.Module):
    """The float context of an m-channel y: SLICES `ContextNet`s."""

    def __init__(self, m: int, slices: int = SLICES, width: int = WIDTH):
        super().__init__()
        if m % slices:
            raise ValueError(f"{m} channels do not split into {slices} slices")
        self.c, self.slices = m // slices, slices
        self.nets: list[ContextNet] = nn.ModuleList(  # type: ignore[assignment]
            ContextNet(self.c * (k + 3) + 1, self.c, width) for k in range(slices)
        )


def quarters(v: torch.Tensor) -> torch.Tensor:
    """Float64 values -> the integer quarter units a context reads (exact on both sides)."""
    return torch.round(v.double() * QUARTER)


@dataclass
class Reads:
    """What the context reads, in quarter units (float64 holding integers), all unscaled (as
    g_s sees y_hat, so alike at every q): y_q the y_hat decoded so far (1, M, h, w), mean_q the
    hyperprior's means, level_q its scale indexes less the q's index offset, q the q byte."""

    y_q: torch.Tensor
    mean_q: torch.Tensor
    level_q: torch.Tensor
    q: int


def y_quarters(sym: torch.Tensor, mean_s: torch.Tensor, igain: torch.Tensor) -> torch.Tensor:
    """y_hat (unscaled) of symbols (1, M, h, w) in quarter units; igain (M,) of the q byte."""
    return quarters((sym.double() + mean_s) * igain.double()[None, :, None, None])


def reads(
    sym: torch.Tensor, mean_s: torch.Tensor, idx: torch.Tensor, igain: torch.Tensor, index_offset: torch.Tensor, q: int
) -> Reads:
    """The context's reads of an image whose symbols are all known (the encoder; the decoder
    starts from `sym` all zero and fills `y_q` in part by part)."""
    ig = igain.double()[None, :, None, None]
    level = idx.double() - index_offset.double()[None, :, None, None]
    return Reads(y_quarters(sym, mean_s, igain), quarters(mean_s * ig), quarters(level), q)


def slice_inputs(k: int, c: int, r: Reads, first: torch.Tensor | None) -> torch.Tensor:
    """Slice k's inputs in quarter units (1, c k + 3c + 1, h, w): the earlier slices' y_q, this
    slice's mean_q and level_q, for the second half the first half's y_q (first: (h, w) bool;
    None for the first half, whose spatial input is zero) and the q byte as a plane."""
    sl = slice(k * c, (k + 1) * c)
    spatial = torch.zeros_like(r.y_q[:, sl]) if first is None else r.y_q[:, sl] * first
    q = torch.full_like(r.y_q[:, :1], float(r.q))
    return torch.cat([r.y_q[:, : k * c], r.mean_q[:, sl], r.level_q[:, sl], spatial, q], 1)


def shift_tables(scales: torch.Tensor, radius: int) -> torch.Tensor:
    """(QUARTER, n_scales, 2 (radius + MAX_SHIFT) + 1) int32 frequencies: the Gaussian of each
    scale centred at f / QUARTER for f = 0 .. QUARTER - 1."""
    r = radius + MAX_SHIFT
    k = torch.arange(-r, r + 1, dtype=torch.float64)
    rows = []
    for f in range(QUARTER):
        s = scales.to(torch.float64)[:, None]
        upper = 0.5 * torch.erfc(-(k + 0.5 - f / QUARTER) / (s * math.sqrt(2)))
        lower = 0.5 * torch.erfc(-(k - 0.5 - f / QUARTER) / (s * math.sqrt(2)))
        rows.append((upper - lower).clamp_min(0))
    return torch.from_numpy(quantize_pmf(torch.stack(rows).numpy())).to(torch.int32)  # as `gaussian_tables`
