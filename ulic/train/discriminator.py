"""A patch discriminator conditioned on the compressed latent (HiFiC / MS-ILLM style), and
the hinge losses of stage 3.

    image (B, 3, H, W) in [0, 1], z_c (B, 32, H/8, W/8)
      z_c --conv 3x3--> (B, COND, H/8, W/8) --nearest x8--> (B, COND, H, W)
      cat(image * 2 - 1, cond) --4x4 s2: 64, 128, 256 --> 4x4 s1: 512 --> 4x4 s1: 1
      logits (B, 1, ~H/8, ~W/8): one real/fake score per patch
Spectral norm on every convolution, LeakyReLU 0.2. Conditioning on z_c makes the critic ask
"is this a natural image *for this code*", so the generator cannot win by drifting from it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from ulic.vae.taef2 import LATENT_CHANNELS, SCALE

COND = 12  # conditioning channels from the latent
WIDTHS = (64, 128, 256, 512)


class PatchDiscriminator(nn.Module):
    def __init__(self, cond: int = COND, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        self.cond = spectral_norm(nn.Conv2d(LATENT_CHANNELS, cond, 3, padding=1))
        layers: list[nn.Module] = []
        n_in = 3 + cond
        for i, n in enumerate(widths):
            stride = 2 if i < len(widths) - 1 else 1
            layers += [spectral_norm(nn.Conv2d(n_in, n, 4, stride=stride, padding=1)), nn.LeakyReLU(0.2)]
            n_in = n
        layers.append(spectral_norm(nn.Conv2d(n_in, 1, 4, padding=1)))
        self.body = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, z_c: torch.Tensor, shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
        """Patch logits; `shift` = (dy, dx) moves image and condition together against the
        critic's stride grid (edge pixels repeated), a translation augmentation."""
        c = F.interpolate(F.leaky_relu(self.cond(z_c), 0.2), scale_factor=SCALE, mode="nearest")
        x = torch.cat([image * 2 - 1, c], 1)  # (B, 3 + COND, H, W)
        dy, dx = shift
        if dy or dx:
            x = F.pad(x, (dx, 0, dy, 0), mode="replicate")[..., : image.shape[2], : image.shape[3]]
        return self.body(x)  # (B, 1, ~H/8, ~W/8)


def d_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss (scalar)."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss per sample (B,)."""
    return -fake_logits.mean((1, 2, 3))
