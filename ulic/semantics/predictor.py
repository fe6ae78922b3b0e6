"""The decoder-side concept predictor: region features of the latent's integer symbols -> one
frequency table over the concept vocabulary per region, in integer arithmetic only, so encoder
and decoder build identical tables on every machine (as `ulic.codec.hyper_synthesis` does for
the latent's own tables).

    features   per region and latent channel: mean of y_int and mean of |y_int| over the
               region's y positions, y_int = symbol + round(mean) (the gained latent to the
               nearest integer), in fixed point FEATURE_FRAC_BITS; and the q byte
    logits     W_int @ features + b_int                       (int64, exact)
    table      freq_k from EXP_TABLE[(max - logit_k) >> shift], renormalised to 2**PRECISION

W_int, b_int are a logistic regression fitted in float on training photos and rounded to
WEIGHT_FRAC_BITS (`fit`); the float fit never runs at coding time.
"""

from __future__ import annotations

import numpy as np
import torch

from ulic.codec.entropy_models import PRECISION
from ulic.semantics.encoder import GRID

FEATURE_FRAC_BITS = 4  # fixed point of the region means
WEIGHT_FRAC_BITS = 16  # fixed point of the predictor's weights
LOGIT_STEPS_PER_NAT = 8  # resolution of the integer exponential
EXP_ONE = 1 << 30  # EXP_TABLE[0]
EXP_STEP = 947_573_834  # round(2**30 * exp(-1/8)): one table step is 1/8 nat
EXP_LEN = 160  # 20 nats; beyond, every concept gets the floor frequency 1


def _exp_table() -> np.ndarray:
    """EXP_TABLE[t] = floor(2**30 exp(-t/8)) up to the recursion's rounding, by integer
    arithmetic only (Python integers with 30 guard bits), so identical everywhere."""
    v, out = EXP_ONE << 30, []
    for _ in range(EXP_LEN):
        out.append(v >> 30)
        v = v * EXP_STEP >> 30
    return np.array(out, dtype=np.int64)


EXP_TABLE = _exp_table()


def region_bounds(n: int, grid: int = GRID) -> list[tuple[int, int]]:
    """[a, b) ranges splitting n positions into `grid` regions; each region has at least one
    position (regions overlap when n < grid)."""
    out = []
    for i in range(grid):
        a = min(i * n // grid, n - 1)
        out.append((a, max((i + 1) * n // grid, a + 1)))
    return out


def region_features(sym: torch.Tensor, mean_s: torch.Tensor, hw: tuple[int, int], q_byte: int) -> np.ndarray:
    """Integer symbols (1, M, h, w) and exact float64 means -> int64 features (GRID * GRID, 2M + 1)
    over the image's own y positions hw = (ceil(H/32), ceil(W/32))."""
    hw = (min(hw[0], sym.shape[2]), min(hw[1], sym.shape[3]))
    y_int = (sym[0, :, : hw[0], : hw[1]] + torch.round(mean_s[0, :, : hw[0], : hw[1]]).long()).numpy()
    rows = []
    for a, b in region_bounds(hw[0]):
        for c, d in region_bounds(hw[1]):
            block = y_int[:, a:b, c:d].reshape(y_int.shape[0], -1)  # (M, n)
            n = block.shape[1]
            mean = (block.sum(1) << FEATURE_FRAC_BITS) // n
            mag = (np.abs(block).sum(1) << FEATURE_FRAC_BITS) // n
            rows.append(np.concatenate([mean, mag, [q_byte << FEATURE_FRAC_BITS]]))
    return np.stack(rows).astype(np.int64)


def uniform_tables(regions: int, k: int) -> np.ndarray:
    """(regions, k) int32: every concept equally likely (the prior without a predictor)."""
    base = np.full(k, (1 << PRECISION) // k, dtype=np.int64)
    base[0] += (1 << PRECISION) - base.sum()
    return np.tile(base, (regions, 1)).astype(np.int32)


def tables_from_logits(logits: np.ndarray, frac_bits: int) -> np.ndarray:
    """Integer logits (regions, k) in fixed point frac_bits -> int32 frequency tables, each row
    summing to 2**PRECISION with every entry >= 1."""
    d = (logits.max(1, keepdims=True) - logits) * LOGIT_STEPS_PER_NAT >> frac_bits
    w = EXP_TABLE[np.minimum(d, EXP_LEN - 1)] >> 14  # (regions, k), 1..2**16
    k = logits.shape[1]
    freq = 1 + w * ((1 << PRECISION) - k) // w.sum(1, keepdims=True)
    rows = np.arange(len(freq))
    freq[rows, freq.argmax(1)] += (1 << PRECISION) - freq.sum(1)
    return freq.astype(np.int32)


class ConceptPredictor:
    """Integer logistic regression: features (regions, F) int64 -> tables (regions, K) int32."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray):
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise ValueError(f"predictor weight {weight.shape} and bias {bias.shape} do not fit")
        self.weight, self.bias = weight.astype(np.int64), bias.astype(np.int64)  # (K, F), (K,)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(regions, F) -> (regions, K) in fixed point FEATURE_FRAC_BITS + WEIGHT_FRAC_BITS."""
        return features @ self.weight.T + (self.bias << FEATURE_FRAC_BITS)[None, :]

    def tables(self, features: np.ndarray) -> np.ndarray:
        return tables_from_logits(self.logits(features), FEATURE_FRAC_BITS + WEIGHT_FRAC_BITS)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "predictor.weight": torch.from_numpy(self.weight.astype(np.int32)),
            "predictor.bias": torch.from_numpy(self.bias.astype(np.int32)),
        }

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> ConceptPredictor:
        return cls(t["predictor.weight"].numpy(), t["predictor.bias"].numpy())


def fit(
    features: np.ndarray, ids: np.ndarray, k: int, steps: int = 2000, lr: float = 0.05, decay: float = 1e-4
) -> ConceptPredictor:
    """A float softmax regression of ids (N,) on features (N, F) int64 (full-batch Adam, weight
    decay), rounded to the integer predictor. Features are scaled per column for the fit and the
    scale is folded into the integer weights."""
    x = torch.from_numpy(features.astype(np.float64) / (1 << FEATURE_FRAC_BITS))
    scale = x.abs().mean(0).clamp_min(1e-3)  # (F,)
    xs = (x / scale).float()
    y = torch.from_numpy(ids.astype(np.int64))
    lin = torch.nn.Linear(xs.shape[1], k)
    opt = torch.optim.Adam(lin.parameters(), lr=lr, weight_decay=decay)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(xs), y).backward()
        opt.step()
    w = (lin.weight.detach().double() / scale[None, :]) * (1 << WEIGHT_FRAC_BITS)
    b = lin.bias.detach().double() * (1 << WEIGHT_FRAC_BITS)
    return ConceptPredictor(torch.round(w).long().numpy(), torch.round(b).long().numpy())
