"""TAEF2: the frozen tiny autoencoder for the FLUX.2 latent space (RGB [0, 1] <-> 32 x H/8 x W/8).

Architecture facts come from the shared data README (TAEF2 section); weights are the upstream `.pth` state dicts,
loaded with `weights_only=True` and cast to float32. Module indices match the upstream
`nn.Sequential` keys so the files load with strict keys.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ulic.runtime import channels_last
from ulic.vae.tiling import decode_tiled, encode_tiled

LATENT_CHANNELS = 32
SCALE = 8  # image pixels per latent position, each side


def conv(n_in: int, n_out: int, bias: bool = True, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


class Pool(nn.Module):
    """The mid-block's channel mixer: 1x1 n->4n, GroupNorm(4), ReLU, 1x1 4n->n."""

    def __init__(self, n: int):
        super().__init__()
        self.pool = nn.Sequential(
            nn.Conv2d(n, 4 * n, 1, bias=False), nn.GroupNorm(4, 4 * n), nn.ReLU(), nn.Conv2d(4 * n, n, 1, bias=False)
        )


class Block(nn.Module):
    """relu(x + conv(relu(conv(relu(conv(x)))))); the mid variant first adds pool(x)."""

    def __init__(self, n: int, mid: bool = False):
        super().__init__()
        self.conv = nn.Sequential(conv(n, n), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n))
        if mid:
            self.pool = Pool(n).pool
        self.mid = mid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mid:
            x = x + self.pool(x)
        return torch.relu(x + self.conv(x))


class Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def make_encoder() -> nn.Sequential:
    """(B, 3, H, W) in [0, 1] -> (B, 32, H/8, W/8)."""
    n = 64
    return nn.Sequential(
        conv(3, n),
        Block(n),
        conv(n, n, bias=False, stride=2),
        Block(n),
        Block(n),
        Block(n),
        conv(n, n, bias=False, stride=2),
        Block(n),
        Block(n),
        Block(n),
        conv(n, n, bias=False, stride=2),
        Block(n, True),
        Block(n, True),
        Block(n, True),
        conv(n, LATENT_CHANNELS),
    )


def make_decoder() -> nn.Sequential:
    """(B, 32, H/8, W/8) -> (B, 3, H, W), unclamped."""
    n = 64
    up = lambda: nn.Upsample(scale_factor=2)  # noqa: E731  nearest
    return nn.Sequential(
        Clamp(),
        conv(LATENT_CHANNELS, n),
        nn.ReLU(),
        Block(n, True),
        Block(n, True),
        Block(n, True),
        up(),
        conv(n, n, bias=False),
        Block(n),
        Block(n),
        Block(n),
        up(),
        conv(n, n, bias=False),
        Block(n),
        Block(n),
        Block(n),
        up(),
        conv(n, n, bias=False),
        Block(n),
        conv(n, 3),
    )


class TAEF2(nn.Module):
    """Frozen float32 autoencoder. `encode`: image -> latent; `decode`: latent -> image in [0, 1]."""

    def __init__(self, encoder_path: Path | None = None, decoder_path: Path | None = None):
        super().__init__()
        self.encoder = make_encoder()
        self.decoder = make_decoder()
        for module, path in ((self.encoder, encoder_path), (self.decoder, decoder_path)):
            if path is not None:
                state = torch.load(path, map_location="cpu", weights_only=True)
                module.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        self.requires_grad_(False)
        self.eval()
        channels_last(self)  # NHWC convolutions: faster on CPUs

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 32, H/8, W/8); one image is encoded in tiles when large."""
        x = x.contiguous(memory_format=torch.channels_last)
        if x.shape[0] == 1 and x.shape[2] % 8 == 0 and x.shape[3] % 8 == 0:
            return encode_tiled(self.encoder, x).contiguous()
        return self.encoder(x).contiguous()

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, 32, h, w) -> (B, 3, 8h, 8w) in [0, 1]; one latent is decoded in tiles when large."""
        latent = latent.contiguous(memory_format=torch.channels_last)
        if latent.shape[0] == 1:
            return decode_tiled(self.decoder, latent).clamp(0, 1).contiguous()
        return self.decoder(latent).clamp(0, 1).contiguous()


def decode_pixels(decoder: nn.Module, latent: torch.Tensor, bf16: bool) -> torch.Tensor:
    """The frozen VAE decoder (or a slice of it) on a batch, for training losses and gradients:
    optionally in bfloat16 autocast with channels_last memory (about 2.7x faster on CPUs with
    AVX512-BF16); float32 result."""
    if not bf16:
        return decoder(latent)
    with torch.autocast(latent.device.type, dtype=torch.bfloat16):
        return decoder(latent.contiguous(memory_format=torch.channels_last)).float()
