"""The trainable pixel decoder: TAEF2's decoder architecture, initialised from its weights,
fine-tuned in stage 3 (pixel fidelity + perceptual + adversarial), with the realism R as input.

    latent (B, 32, h, w), R (B,) in [0, 1]
      layers[:3]  clamp, conv 32->64, relu                 (B, 64, h, w)
      FiLM(R)     h * (1 + scale(R)) + shift(R)             zero-initialised: identity at start
      layers[3:]  mid blocks, 3x (upsample, conv, blocks), conv 64->3   (B, 3, 8h, 8w)

The layer indices are those of `ulic.vae.taef2.make_decoder`, so the frozen TAEF2 decoder loads
into `layers` with strict keys and the tiled decoder (`ulic.vae.tiling`) splits it the same way.
"""

from __future__ import annotations

import torch
from torch import nn

from ulic.vae.taef2 import make_decoder

FILM_AT = 3  # after layers[:3] (clamp, conv, relu), before the GroupNorm mid blocks
WIDTH = 64  # channels of TAEF2's decoder trunk


class PixelDecoder(nn.Module):
    """latent + realism -> image (unclamped); `with_realism(r)` gives a plain latent -> image module."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = make_decoder()
        self.film = nn.Linear(1, 2 * WIDTH)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def load_taef2(self, taef2_decoder: nn.Module) -> PixelDecoder:
        self.layers.load_state_dict(taef2_decoder.state_dict(), strict=True)
        return self

    def head(self, latent: torch.Tensor, realism: torch.Tensor) -> torch.Tensor:
        """(B, 32, h, w), (B,) -> (B, 64, h, w): the input layers and the realism FiLM."""
        return self.film_apply(self.layers[:FILM_AT](latent), realism)

    def forward(self, latent: torch.Tensor, realism: torch.Tensor) -> torch.Tensor:
        return self.layers[FILM_AT:](self.head(latent, realism))

    def film_apply(self, h: torch.Tensor, realism: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(realism.to(h.dtype)[:, None])[:, :, None, None].chunk(2, 1)
        return h * (1 + scale) + shift

    def with_realism(self, realism: float) -> nn.Sequential:
        """An nn.Sequential latent -> image at a fixed R with the same indices as TAEF2's decoder
        (the ReLU at FILM_AT - 1 also applies the FiLM), so `ulic.vae.tiling.decode_tiled`
        splits it at the same place."""
        layers = list(self.layers)
        layers[FILM_AT - 1] = _ReluFiLM(self, realism)
        return nn.Sequential(*layers)


class _ReluFiLM(nn.Module):
    def __init__(self, dec: PixelDecoder, realism: float):
        super().__init__()
        self.dec, self.realism = dec, realism

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.dec.film_apply(torch.relu(h), torch.full((h.shape[0],), self.realism, device=h.device))
