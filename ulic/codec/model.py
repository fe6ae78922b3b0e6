"""The variable-rate latent codec: TAEF2 latent x -> y -> bitstream -> y_hat -> z_c.

    x    (B, 32, H/8, W/8)     frozen VAE latent
    y    (B, M, H/32, W/32)    = g_a(x)
    z    (B, Cz, H/128, W/128) = h_a(y), coded with y by the gained hyperprior
    z_c  (B, 32, H/8, W/8)     = g_s(y_hat * ig(q)), the compressed latent

Quantisation, rates and entropy coding live in `ulic.codec.hyperprior.GainedHyperprior`, which
this class extends with the analysis and synthesis transforms. One model covers the whole rate
range: q in [0, 1] selects the gains, and training samples q continuously with lambda(q)
log-linear between `lmbda_min` and `lmbda_max`.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
from torch import nn

from ulic.codec.hyperprior import (
    Q_STEPS,
    ZIG_FRAC_BITS,
    CodecConfig,
    CodingState,
    GainedHyperprior,
    Gains,
    interp_rows,
    tabulate_coding_state,
)
from ulic.codec.layers import ResBlock, Up2, conv3
from ulic.timing import StageTimer

__all__ = [
    "Q_STEPS",
    "ZIG_FRAC_BITS",
    "CodecConfig",
    "CodingState",
    "Gains",
    "LatentCodec",
    "build_coding_state",
    "config_dict",
    "interp_rows",
    "lmbda_of",
]

LATENT_PER_Z = 16  # latent positions per z position, each side (g_a: 4, h_a: 4)


def lmbda_of(q: torch.Tensor, cfg: CodecConfig) -> torch.Tensor:
    """The rate-distortion trade-off lambda(q), log-linear in q."""
    lo, hi = math.log(cfg.lmbda_min), math.log(cfg.lmbda_max)
    return torch.exp(lo + q * (hi - lo))


class LatentCodec(GainedHyperprior):
    """Hyperprior codec on the VAE latent. `forward` trains; `compress`/`decompress` code."""

    def __init__(self, cfg: CodecConfig = CodecConfig()):
        super().__init__(cfg)
        c, nf, n, m = cfg.latent_channels, cfg.n_full, cfg.n, cfg.m
        self.g_a = nn.Sequential(
            conv3(c, nf),
            ResBlock(nf),
            conv3(nf, n, stride=2),  # (B, n, H/16, W/16)
            ResBlock(n),
            ResBlock(n),
            conv3(n, n, stride=2),  # (B, n, H/32, W/32)
            ResBlock(n),
            conv3(n, m),
        )
        self.g_s = nn.Sequential(
            conv3(m, n),
            ResBlock(n),
            ResBlock(n),
            Up2(n, n),  # (B, n, H/16, W/16)
            ResBlock(n),
            ResBlock(n),
            Up2(n, nf),  # (B, nf, H/8, W/8)
            ResBlock(nf),
            conv3(nf, c),
        )

    def forward(self, x: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (B, 32, h, w), q (B,) -> z_c and bits per batch item (noise proxy for the rate;
        z_c from straight-through rounded y)."""
        y = self.g_a(x)
        return self.forward_latents(y, self.h_a(y), q)

    def forward_latents(self, y: torch.Tensor, z: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """`forward` from y and z as an analysis gave them (before gains): how another analysis
        (`ulic.codec.triple`) trains against this codec's entropy models and synthesis."""
        gains = self.gains(q)
        z_noisy = self.quantize(z * gains.z, "noise")
        mean_s, scale_s = self.hyper(z_noisy, gains)
        y_s = y * gains.y
        y_noisy = self.quantize(y_s, "noise")
        y_ste = self.quantize(y_s, "ste", mean_s)
        return {"z_c": self.g_s(y_ste * gains.y_inv), "bits": self.bits(y_noisy, mean_s, scale_s, z_noisy)}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """The compressed latent z_c as decoding gives it (rounded y and z; float h_s), for a
        batch: x (B, 32, h, w), q (B,) -> z_c (B, 32, h, w). Used to train the decoder."""
        gains, cfg = self.gains(q), self.cfg
        y = self.g_a(x)
        z_hat = self.quantize(self.h_a(y) * gains.z, "round", radius=cfg.radius_z)
        mean_s, _ = self.hyper(z_hat, gains)
        return self.g_s(self.quantize(y * gains.y, "round", mean_s, cfg.radius_y) * gains.y_inv)

    @torch.no_grad()
    def analyse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (1, 32, h, w) -> y (1, M, h/4, w/4) and z (1, Cz, h/16, w/16), before any gain:
        what `compress_latents` codes at any q byte (and what encode-time optimisation tunes)."""
        y = self.g_a(x)
        return y, self.h_a(y)

    @torch.no_grad()
    def compress(self, x: torch.Tensor, q_byte: int) -> tuple[bytes, float]:
        """x (1, 32, h, w) with h, w multiples of LATENT_PER_Z -> (bytes, model's estimated bits)."""
        return self.compress_latents(*self.analyse(x), q_byte)

    @torch.no_grad()
    def decompress(
        self, data: bytes, latent_hw: tuple[int, int], q_byte: int, timer: StageTimer | None = None
    ) -> torch.Tensor:
        """bytes -> z_c (1, 32, h, w) for a padded latent of size latent_hw (timer: marks
        "entropy_decode" and "synthesis")."""
        return self.decompress_with_symbols(data, latent_hw, q_byte, timer)[0]

    @torch.no_grad()
    def decompress_with_symbols(
        self, data: bytes, latent_hw: tuple[int, int], q_byte: int, timer: StageTimer | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`decompress`, also returning the decoded y symbols and their exact means (what the
        SRC predictor reads), from one entropy decoding."""
        h, w = latent_hw
        sym, mean_s = self.decode_symbols(data, (h // LATENT_PER_Z, w // LATENT_PER_Z), q_byte)
        y_hat = self.latents_from_symbols(sym, mean_s, q_byte)
        if timer is not None:
            timer.mark("entropy_decode")
        z_c = self.g_s(y_hat)
        if timer is not None:
            timer.mark("synthesis")
        return z_c, sym, mean_s


def build_coding_state(codec: LatentCodec, calib_latents: list[torch.Tensor]) -> CodingState:
    """The coding tables of a trained codec (`tabulate_coding_state`), calibrated on VAE latents."""
    with torch.no_grad():
        return tabulate_coding_state(codec, [codec.g_a(x) for x in calib_latents])


def config_dict(cfg: CodecConfig) -> dict:
    return asdict(cfg)
