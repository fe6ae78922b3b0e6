"""Small building blocks of the latent codec's transforms."""

from __future__ import annotations

import torch
from torch import nn


def conv3(n_in: int, n_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1)


def zero_init(layer: nn.Conv2d | nn.Linear) -> None:
    """Weights and bias at zero: a new branch whose output starts as exactly nothing."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class ResBlock(nn.Module):
    """x + conv(act(conv(act(x))))."""

    def __init__(self, n: int):
        super().__init__()
        self.body = nn.Sequential(nn.LeakyReLU(0.1), conv3(n, n), nn.LeakyReLU(0.1), conv3(n, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Up2(nn.Module):
    """2x upsampling by sub-pixel convolution: (B, n_in, h, w) -> (B, n_out, 2h, 2w)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = conv3(n_in, 4 * n_out)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))
