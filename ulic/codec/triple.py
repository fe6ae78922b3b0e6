"""The triple encoder (SPRDiff): the analysis transforms read, besides the TAEF2 latent, a frozen
semantic encoder's features and a small distortion-oriented pixel encoder, fused into g_a's
first features. It lives on the encoder side only: y and z go through the same entropy models,
and the same synthesis decodes them, so files keep their format and any decoder reads them.

    x      (B, 32, H/8, W/8)         TAEF2 latent of the padded image
    image  (B, 3, H, W)              the padded image, in [0, 1]
    s      (B, 1024, H/8, W/8)       VGG16 relu4_3 + relu5_3 (`ulic.semantics.encoder.dense_features`)
    d      (B, nf, H/8, W/8)         = e_d(image), three stride-2 convolutions
    h0     = g_a[0](x) + p_s(s) + d  p_s and e_d's last layer start at zero: at step 0 the
                                     triple encoder is the codec's own g_a
    y      = g_a[1:](h0)             (B, M, H/32, W/32)
    z      = h_a(y)                  (B, Cz, H/128, W/128)

g_a and h_a are copies of the codec's, trained on; the codec itself is left untouched.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ulic.codec.layers import conv3, zero_init
from ulic.codec.model import LatentCodec
from ulic.semantics.encoder import DENSE_DIM, dense_features
from ulic.vae.taef2 import SCALE


@dataclass(frozen=True)
class TripleConfig:
    """`pixel`: the distortion-oriented pixel encoder, with these stage widths; `semantic`: the
    VGG16 features. Both off is the codec's own analysis, trainable (the ablation's baseline)."""

    pixel: bool = True
    pixel_widths: tuple[int, int] = (24, 48)
    semantic: bool = True

    def as_dict(self) -> dict:
        return {**asdict(self), "pixel_widths": list(self.pixel_widths)}

    @classmethod
    def from_dict(cls, d: dict) -> TripleConfig:
        w1, w2 = (int(v) for v in d["pixel_widths"])
        return cls(pixel=bool(d["pixel"]), pixel_widths=(w1, w2), semantic=bool(d["semantic"]))


class TripleAnalysis(nn.Module):
    """(x, image) -> (y, z) before gains, what `LatentCodec.analyse` gives from x alone."""

    def __init__(self, codec: LatentCodec, cfg: TripleConfig = TripleConfig()):
        super().__init__()
        self.cfg = cfg
        nf = codec.cfg.n_full
        w1, w2 = cfg.pixel_widths
        self.g_a = copy.deepcopy(codec.g_a)
        self.h_a = copy.deepcopy(codec.h_a)
        self.e_d: nn.Sequential | None = None
        if cfg.pixel:
            last = nn.Conv2d(w2, nf, 1)  # (B, nf, H/8, W/8)
            zero_init(last)
            self.e_d = nn.Sequential(
                conv3(3, w1, stride=2),  # (B, w1, H/2, W/2)
                nn.LeakyReLU(0.1),
                conv3(w1, w2, stride=2),  # (B, w2, H/4, W/4)
                nn.LeakyReLU(0.1),
                conv3(w2, w2, stride=2),  # (B, w2, H/8, W/8)
                nn.LeakyReLU(0.1),
                last,
            )
        self.p_s = nn.Conv2d(DENSE_DIM, nf, 1) if cfg.semantic else None
        if self.p_s is not None:
            zero_init(self.p_s)
        self.requires_grad_(False).requires_grad_(True)  # copies of a frozen codec: trainable again

    def forward(self, x: torch.Tensor, image: torch.Tensor, bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 32, h, w), image (B, 3, 8h, 8w) -> y (B, M, h/4, w/4), z (B, Cz, h/16, w/16).
        bf16: the frozen VGG16 in bfloat16 autocast (training)."""
        if image.shape[2:] != (x.shape[2] * SCALE, x.shape[3] * SCALE):
            raise ValueError(f"image {tuple(image.shape[2:])} does not match latent {tuple(x.shape[2:])}")
        h0 = self.g_a[0](x)  # (B, nf, h, w)
        if self.e_d is not None:
            h0 = h0 + self.e_d(image)
        if self.p_s is not None:
            h0 = h0 + self.p_s(dense_features(image, bf16))
        y = self.g_a[1:](h0)
        return y, self.h_a(y)
