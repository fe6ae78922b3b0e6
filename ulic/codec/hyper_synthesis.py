"""Hyper-synthesis h_s: z_tilde -> (mean, scale-index value) of y, and its exact integer twin.

Training uses `HyperSynthesis` in float. For coding, `IntegerHyperSynthesis` evaluates the
same network with integer weights and integer activations, accumulating in float64 where every
partial sum is an integer below 2**53, so each accumulation is exact whatever the summation
order (threads, BLAS, CPU or GPU). What remains per layer is elementwise IEEE arithmetic
(multiply, add, round), which is correctly rounded everywhere. So the scale indexes and means
that select the probability tables are bit-identical on every machine (Balle et al. 2019,
"Integer networks for data compression", in spirit).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_BITS = 15  # |w_int| <= 2**15 - 1
ACT_BITS = 16  # 0 <= a_int <= 2**16 - 1


class ConvStack(nn.Module):
    """Convolutions with ReLU between them (an upsampling x2 before those flagged in
    UPSAMPLE_BEFORE), the last one's output split into two halves of m channels: the float
    networks `integerize` converts (h_s, and each slice of the entropy context)."""

    UPSAMPLE_BEFORE: tuple[bool, ...] = ()

    def __init__(self, m: int, convs: list[nn.Conv2d]):
        super().__init__()
        self.m = m
        self.convs = nn.ModuleList(convs)

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output (after ReLU for hidden layers); the last is the two halves."""
        out = []
        for i, conv in enumerate(self.convs):
            if self.UPSAMPLE_BEFORE[i]:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = conv(x)
            if i < len(self.convs) - 1:
                x = torch.relu(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.activations(x)[-1]
        return y[:, : self.m], y[:, self.m :]


class HyperSynthesis(ConvStack):
    """(B, Cz, h, w) -> mean (B, M, 4h, 4w), index value (B, M, 4h, 4w)."""

    UPSAMPLE_BEFORE = (False, True, True, False)

    def __init__(self, cz: int, n: int, m: int):
        convs = [nn.Conv2d(cz, n, 3, padding=1), nn.Conv2d(n, n, 3, padding=1), nn.Conv2d(n, n, 3, padding=1)]
        super().__init__(m, [*convs, nn.Conv2d(n, 2 * m, 1)])


def _exact_conv(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Integer-valued float64 conv (stride 1, 'same' padding) as im2col + matmul; exact."""
    k = w.shape[-1]
    b, _, h, wd = a.shape
    cols = F.unfold(a, k, padding=k // 2)  # (B, Cin*k*k, h*w)
    return torch.matmul(w.reshape(w.shape[0], -1), cols).reshape(b, w.shape[0], h, wd)


@torch.no_grad()
def integerize(hs: ConvStack, calib: list[torch.Tensor], input_scale: float) -> dict[str, torch.Tensor]:
    """Integer weights, per-channel multipliers and activation scales for `hs` (h_s, or one
    slice's network of the entropy context).

    calib: typical float inputs (z_tilde for h_s), used to size the activation ranges.
    input_scale: the real value of one unit of the integer input.
    """
    runs = [hs.activations(c.float()) for c in calib]
    acts = [torch.stack([r[i].amax() for r in runs]) for i in range(len(hs.convs))]
    state: dict[str, torch.Tensor] = {}
    s_in = torch.tensor(input_scale, dtype=torch.float64)
    for i, module in enumerate(hs.convs):
        conv = cast(nn.Conv2d, module)
        w = conv.weight.double()
        s_w = w.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / (2**WEIGHT_BITS - 1)  # (Cout,)
        state[f"{i}.weight"] = torch.round(w / s_w[:, None, None, None]).to(torch.int32)
        state[f"{i}.mult"] = s_w * s_in
        state[f"{i}.bias"] = conv.bias.double() if conv.bias is not None else torch.zeros_like(s_w)
        if i < len(hs.convs) - 1:
            peak = float(acts[i].amax()) * 1.5 + 1e-6
            s_in = torch.tensor(peak / (2**ACT_BITS - 1), dtype=torch.float64)
            state[f"{i}.act_inv"] = 1 / s_in
    return state


class IntegerHyperSynthesis(nn.Module):
    """Exact evaluation of an integerized `HyperSynthesis`; inputs are integer tensors."""

    def __init__(
        self,
        state: dict[str, torch.Tensor],
        m: int,
        layers: int = 4,
        upsample: tuple[bool, ...] = HyperSynthesis.UPSAMPLE_BEFORE,
    ):
        super().__init__()
        self.m, self.layers, self.upsample = m, layers, upsample
        for k, v in state.items():
            self.register_buffer(k.replace(".", "_"), v)

    def forward(self, z_int: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_int (B, Cz, h, w) integers -> float64 mean and index value (B, M, 4h, 4w)."""
        a = z_int.to(torch.float64)
        for i in range(self.layers):
            if self.upsample[i]:
                a = a.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
            w = getattr(self, f"{i}_weight").to(torch.float64)
            acc = _exact_conv(a, w)
            x = acc * getattr(self, f"{i}_mult")[:, None, None] + getattr(self, f"{i}_bias")[:, None, None]
            if i < self.layers - 1:
                a = torch.round(torch.relu(x) * getattr(self, f"{i}_act_inv")).clamp(0, 2**ACT_BITS - 1)
        return x[:, : self.m], x[:, self.m :]
