"""Bounded-memory TAEF2 encoding and decoding by tiles, with the same result as one pass.

TAEF2 is local everywhere except its mid blocks, whose GroupNorm sees the whole feature map.
Those blocks run at 1/8 of the image size, where a whole 4096x4096 image is only a
(64, 512, 512) map, so they run untiled. The full-resolution parts (the encoder before its mid
blocks, the decoder after them) are purely convolutional and run tile by tile, each tile with
a halo wider than their receptive field, so that every kept output sees exactly its untiled
inputs: no seams and no blending. Results equal the one-pass result up to float rounding.

    encode: image (1, 3, H, W) --tiles--> local features (1, 64, H/8, W/8) --mid--> latent
    decode: latent --mid--> features (1, 64, H/8, W/8) --tiles--> image (1, 3, H, W)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

ENCODER_SPLIT = 11  # encoder[:11] is local (full res -> 1/8), encoder[11:] has GroupNorm
DECODER_SPLIT = 6  # decoder[:6] has GroupNorm (at 1/8), decoder[6:] is local (1/8 -> full)
ENCODER_HALO = 128  # image pixels; receptive-field radius of encoder[:11] is 68
DECODER_HALO = 8  # latent positions; receptive-field radius of decoder[6:] is about 4.4
TILE = 512  # image pixels per tile side (64 latent positions)


def _spans(n: int, tile: int) -> list[tuple[int, int]]:
    return [(a, min(a + tile, n)) for a in range(0, n, tile)]


def tiles(h: int, w: int, tile: int, halo: int):
    """Cover an (h, w) map with tiles: yields (inner, outer) boxes (y0, y1, x0, x1), the
    region a tile keeps and the region (inner plus halo, within the map) it reads."""
    for y0, y1 in _spans(h, tile):
        for x0, x1 in _spans(w, tile):
            yield (y0, y1, x0, x1), (max(0, y0 - halo), min(h, y1 + halo), max(0, x0 - halo), min(w, x1 + halo))


def apply_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    out_scale: float,
    tile: int,
    halo: int,
    out_channels: int,
) -> torch.Tensor:
    """Apply a local network fn (input side / output side = 1 / out_scale) tile by tile; a halo
    wider than fn's receptive-field radius gives the one-pass result. tile and halo are in input
    positions; tile * out_scale and halo * out_scale are integers."""
    _, _, h, w = x.shape
    s = out_scale
    out = torch.empty(1, out_channels, round(h * s), round(w * s), dtype=x.dtype, device=x.device)
    for (y0, y1, x0, x1), (ya, yb, xa, xb) in tiles(h, w, tile, halo):
        part = fn(x[:, :, ya:yb, xa:xb])
        out[:, :, round(y0 * s) : round(y1 * s), round(x0 * s) : round(x1 * s)] = part[
            :, :, round((y0 - ya) * s) : round((y1 - ya) * s), round((x0 - xa) * s) : round((x1 - xa) * s)
        ]
    return out


def encode_tiled(encoder: nn.Sequential, x: torch.Tensor, tile: int = TILE) -> torch.Tensor:
    """(1, 3, H, W), H and W multiples of 8 -> (1, 32, H/8, W/8), bounded memory."""
    if x.shape[2] <= tile and x.shape[3] <= tile:
        return encoder(x)
    if x.shape[2] % 8 or x.shape[3] % 8 or tile % 8:
        raise ValueError("tiled encoding needs sizes that are multiples of 8")
    feats = apply_tiled(encoder[:ENCODER_SPLIT], x, 1 / 8, tile, ENCODER_HALO, 64)  # (1, 64, H/8, W/8)
    return encoder[ENCODER_SPLIT:](feats)


def decode_tiled(decoder: nn.Sequential, latent: torch.Tensor, tile: int = TILE) -> torch.Tensor:
    """(1, 32, h, w) -> (1, 3, 8h, 8w) unclamped, bounded memory."""
    t = tile // 8
    if latent.shape[2] <= t and latent.shape[3] <= t:
        return decoder(latent)
    feats = decoder[:DECODER_SPLIT](latent)  # (1, 64, h, w)
    return apply_tiled(decoder[DECODER_SPLIT:], feats, 8, t, DECODER_HALO, 3)
