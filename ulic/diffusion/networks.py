"""The distortion-aware reconstruction module (DRM) and the conditional latent denoiser.

    z_c (B, 32, h, w), q (B,) [, R (B,)] [, concepts (B, h, w): region concept ids, K = none]
      DRM --> coarse (B, 32, h, w)        z_c + a learned correction: the `fast` decoder's latent
          --> spatial (B, S, h, w)        pixel-level condition features
          --> semantic (B, G)             global condition vector (pooled features)
    x_t (B, 32, h, w), t (B,), DRM outputs
      Denoiser --> x0_hat = coarse + residual   (B, 32, h, w)
A small UNet: two levels (h and h/2, `mid_blocks` at h/2), FiLM from the time embedding plus the
global vector, spatial features concatenated at the input. The output convolution starts at zero, so an
untrained denoiser returns the DRM's coarse latent.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ulic.codec.hyperprior import Q_STEPS
from ulic.codec.layers import ResBlock, conv3, zero_init
from ulic.diffusion.pixel_decoder import PixelDecoder

T_START_UNCALIBRATED = 300  # t' before `ulic.train.train_decoder` calibrates it per quality byte


@dataclass(frozen=True)
class DiffusionConfig:
    latent_channels: int = 32
    drm_width: int = 64
    drm_blocks: int = 4
    spatial: int = 32  # S
    semantic: int = 128  # G
    widths: tuple[int, int] = (64, 128)
    blocks: int = 2  # per level and direction
    mid_blocks: int | None = None  # blocks at the h/2 level; None: 2 * blocks
    emb: int = 128
    realism: bool = False  # stage 3: DRM and denoiser take the realism R in [0, 1]
    pixel_decoder: bool = False  # stage 3: a trainable pixel decoder replaces the frozen TAEF2 one
    concepts: int = 0  # K > 0: the DRM reads a map of concept ids (an SRC section's), id K = none
    concept_dim: int = 16  # channels of a concept's learned embedding
    vocabulary: int = -1  # the vocabulary id (`Semantics.vocabulary_id`) those ids belong to

    @classmethod
    def from_dict(cls, d: dict) -> DiffusionConfig:
        """The inverse of `as_dict` (JSON lists become tuples)."""
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kwargs)

    def as_dict(self) -> dict:
        return asdict(self)


class DRM(nn.Module):
    """Distortion-aware reconstruction module (SPRDiff), on the compressed latent."""

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        c, n = cfg.latent_channels, cfg.drm_width
        self.head = conv3(c + 1 + cfg.realism, n)  # z_c and constant planes holding q (and R)
        self.body = nn.Sequential(*[ResBlock(n) for _ in range(cfg.drm_blocks)])
        self.to_coarse = conv3(n, c)
        self.to_spatial = conv3(n, cfg.spatial)
        self.to_semantic = nn.Sequential(
            nn.Linear(2 * n, cfg.semantic), nn.SiLU(), nn.Linear(cfg.semantic, cfg.semantic)
        )
        zero_init(self.to_coarse)
        self.n_concepts = cfg.concepts
        if cfg.concepts:  # a per-region bias on the head's features; zero at start
            self.concept_emb = nn.Embedding(cfg.concepts + 1, cfg.concept_dim)
            self.concept_in = nn.Conv2d(cfg.concept_dim, n, 1)
            zero_init(self.concept_in)

    def forward(
        self,
        z_c: torch.Tensor,
        q: torch.Tensor,
        realism: torch.Tensor | None = None,
        concepts: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """realism (B,) is read only by a model configured with `realism`, concepts (B, h, w) int64
        only by one configured with `concepts` (None: none known, the id K everywhere)."""
        planes = [q] if self.head.in_channels == z_c.shape[1] + 1 else [q, _given(realism)]
        planes = [v.to(z_c.dtype)[:, None, None, None].expand(-1, 1, *z_c.shape[2:]) for v in planes]
        f = self.head(torch.cat([z_c, *planes], 1))  # (B, n, h, w)
        if self.n_concepts:
            if concepts is None:
                concepts = torch.full((z_c.shape[0], *z_c.shape[2:]), self.n_concepts, device=z_c.device)
            e = self.concept_emb(concepts.long()).permute(0, 3, 1, 2).to(f.dtype)  # (B, concept_dim, h, w)
            f = f + self.concept_in(e)
        f = self.body(f)
        pooled = torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)  # (B, 2n)
        return z_c + self.to_coarse(f), self.to_spatial(f), self.to_semantic(pooled)


def _given(realism: torch.Tensor | None) -> torch.Tensor:
    if realism is None:
        raise ValueError("this decoder is conditioned on the realism R: pass realism=")
    return realism


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) timesteps -> (B, dim) sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], 1)


class FiLMBlock(nn.Module):
    """x + conv(silu(film(conv(silu(x)), emb))), with an optional channel change."""

    def __init__(self, n_in: int, n_out: int, emb: int):
        super().__init__()
        self.conv1 = conv3(n_in, n_out)
        self.film = nn.Linear(emb, 2 * n_out)
        self.conv2 = conv3(n_out, n_out)
        self.skip = nn.Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(x))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, 1)
        h = h * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class Denoiser(nn.Module):
    """x0-predicting conditional UNet in the 32-channel latent space."""

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        c, (w0, w1), e = cfg.latent_channels, cfg.widths, cfg.emb
        self.emb_dim = e
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.sem_proj = nn.Linear(cfg.semantic, e)
        self.realism_proj = nn.Linear(1, e) if cfg.realism else None
        if self.realism_proj is not None:
            nn.init.zeros_(self.realism_proj.weight)
            nn.init.zeros_(self.realism_proj.bias)
        self.conv_in = conv3(2 * c + cfg.spatial, w0)  # x_t, coarse, spatial features
        self.down0 = nn.ModuleList([FiLMBlock(w0, w0, e) for _ in range(cfg.blocks)])
        self.down = nn.Conv2d(w0, w1, 3, stride=2, padding=1)  # (B, w1, h/2, w/2)
        n_mid = 2 * cfg.blocks if cfg.mid_blocks is None else cfg.mid_blocks
        self.mid = nn.ModuleList([FiLMBlock(w1, w1, e) for _ in range(n_mid)])
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv3(w1, w0))
        self.up0 = nn.ModuleList([FiLMBlock(2 * w0 if i == 0 else w0, w0, e) for i in range(cfg.blocks)])
        self.conv_out = conv3(w0, c)
        zero_init(self.conv_out)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        coarse: torch.Tensor,
        spatial: torch.Tensor,
        semantic: torch.Tensor,
        realism: torch.Tensor | None = None,
    ) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.emb_dim)) + self.sem_proj(semantic)  # (B, e)
        if self.realism_proj is not None:
            emb = emb + self.realism_proj(_given(realism).to(emb.dtype)[:, None])
        emb = F.silu(emb)
        h = self.conv_in(torch.cat([x_t, coarse, spatial], 1))  # (B, w0, h, w)
        for blk in self.down0:
            h = blk(h, emb)
        skip = h
        h = self.down(h)  # (B, w1, h/2, w/2); h and w are even (latents of x128-padded images)
        for blk in self.mid:
            h = blk(h, emb)
        h = torch.cat([self.up(h)[:, :, : skip.shape[2], : skip.shape[3]], skip], 1)
        for blk in self.up0:
            h = blk(h, emb)
        return coarse + self.conv_out(F.silu(h))


class DiffusionDecoder(nn.Module):
    """DRM + denoiser (+ pixel decoder in stage 3); `t_start` (Q_STEPS + 1,) int64 holds t' for
    every quality byte."""

    t_start: torch.Tensor

    def __init__(self, cfg: DiffusionConfig = DiffusionConfig()):
        super().__init__()
        self.cfg = cfg
        self.drm = DRM(cfg)
        self.denoiser = Denoiser(cfg)
        self.pixel = PixelDecoder() if cfg.pixel_decoder else None
        self.register_buffer("t_start", torch.full((Q_STEPS + 1,), T_START_UNCALIBRATED, dtype=torch.int64))
