"""The variable-rate latent codec: TAEF2 latent x -> y -> bitstream -> y_hat -> z_c.

    x    (B, 32, H/8, W/8)    frozen VAE latent
    y    (B, M, H/32, W/32)   = g_a(x)
    z    (B, Cz, H/128, W/128) = h_a(y)
    z_hat = round(z * zgain(q))              factorized prior, per-channel tables
    mean, scale = h_s(z_hat * zigain(q))      scale -> integer index into `scale_table`
    y_hat = (round(y * gain(q) - mean * gain(q)) + mean * gain(q)) * igain(q)
    z_c  (B, 32, H/8, W/8)    = g_s(y_hat)   the compressed latent

One model covers the whole rate range: q in [0, 1] selects gain vectors by log-linear
interpolation between `levels` learned vectors (Cui et al. 2021, "asymmetric gained" units), and
training samples q continuously with lambda(q) log-linear between `lmbda_min` and `lmbda_max`.
In files q is one byte (q = byte / 255); every per-q vector the decoder needs is tabulated for
the 256 bytes and stored with the weights (`CodingState`), as are all probability tables.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ulic.codec import range_coder
from ulic.codec.entropy_models import (FactorizedPrior, gaussian_likelihood, gaussian_tables,
                                       scale_table)
from ulic.codec.hyper_synthesis import HyperSynthesis, IntegerHyperSynthesis, integerize
from ulic.codec.layers import ResBlock, Up2, conv3

Q_STEPS = 255  # q byte b means q = b / 255
ZIG_FRAC_BITS = 8  # inverse hyper-gains are stored in fixed point, 1/256 units


@dataclass(frozen=True)
class CodecConfig:
    latent_channels: int = 32
    n_full: int = 48  # transform width at H/8
    n: int = 96  # transform width at H/16 and H/32
    m: int = 96  # channels of y
    cz: int = 64  # channels of z
    n_hyper: int = 96
    levels: int = 8  # learned gain vectors
    lmbda_min: float = 0.05
    lmbda_max: float = 10.0
    n_scales: int = 64
    scale_min: float = 0.11
    scale_max: float = 48.0
    radius_y: int = 64  # y symbols are clipped to [-radius_y, radius_y]
    radius_z: int = 32

    @property
    def downsample(self) -> int:
        """Pixels per z position, each side: images are padded to a multiple of this."""
        return 128


def lmbda_of(q: torch.Tensor, cfg: CodecConfig) -> torch.Tensor:
    lo, hi = math.log(cfg.lmbda_min), math.log(cfg.lmbda_max)
    return torch.exp(lo + q * (hi - lo))


def interp_rows(log_rows: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """log_rows (K, C), q (B,) in [0, 1] -> exp of the linear interpolation, (B, C)."""
    pos = q.clamp(0, 1) * (log_rows.shape[0] - 1)
    i = pos.floor().long().clamp(max=log_rows.shape[0] - 2)
    t = (pos - i)[:, None]
    return torch.exp(log_rows[i] * (1 - t) + log_rows[i + 1] * t)


class LatentCodec(nn.Module):
    """Hyperprior codec on the VAE latent. `forward` trains; `compress`/`decompress` code."""

    def __init__(self, cfg: CodecConfig = CodecConfig()):
        super().__init__()
        self.cfg = cfg
        c, nf, n, m, cz, nh = cfg.latent_channels, cfg.n_full, cfg.n, cfg.m, cfg.cz, cfg.n_hyper
        self.g_a = nn.Sequential(
            conv3(c, nf), ResBlock(nf), conv3(nf, n, stride=2),  # (B, n, H/16, W/16)
            ResBlock(n), ResBlock(n), conv3(n, n, stride=2),  # (B, n, H/32, W/32)
            ResBlock(n), conv3(n, m))
        self.g_s = nn.Sequential(
            conv3(m, n), ResBlock(n), ResBlock(n), Up2(n, n),  # (B, n, H/16, W/16)
            ResBlock(n), ResBlock(n), Up2(n, nf),  # (B, nf, H/8, W/8)
            ResBlock(nf), conv3(nf, c))
        self.h_a = nn.Sequential(
            conv3(m, nh), nn.LeakyReLU(0.1), conv3(nh, nh, stride=2), nn.LeakyReLU(0.1),
            conv3(nh, cz, stride=2))  # (B, cz, H/128, W/128)
        self.h_s = HyperSynthesis(cz, nh, m)
        self.prior = FactorizedPrior(cz)
        k = cfg.levels
        ramp = torch.linspace(-1.0, 1.5, k)[:, None]
        self.log_gain = nn.Parameter(ramp.repeat(1, m))
        self.log_igain = nn.Parameter(-ramp.repeat(1, m))
        self.log_zgain = nn.Parameter(torch.zeros(k, cz))
        self.log_zigain = nn.Parameter(torch.zeros(k, cz))
        table = scale_table(cfg.n_scales, cfg.scale_min, cfg.scale_max)
        self.log_scale_min = math.log(cfg.scale_min)
        self.log_scale_step = math.log(cfg.scale_max / cfg.scale_min) / (cfg.n_scales - 1)
        self.register_buffer("scales", table, persistent=False)
        self.coding: CodingState | None = None

    # -- training -------------------------------------------------------------------------
    def scale_from_index(self, v: torch.Tensor) -> torch.Tensor:
        """Continuous index value -> Gaussian scale, within the table's range."""
        v = v.clamp(0, self.cfg.n_scales - 1)
        return torch.exp(self.log_scale_min + self.log_scale_step * v)

    def forward(self, x: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (B, 32, h, w), q (B,) -> z_c and likelihoods of y and z (noise proxy)."""
        g, ig = (interp_rows(p, q)[:, :, None, None] for p in (self.log_gain, self.log_igain))
        zg, zig = (interp_rows(p, q)[:, :, None, None] for p in (self.log_zgain, self.log_zigain))
        y = self.g_a(x)
        z_s = self.h_a(y) * zg
        z_noisy = z_s + torch.empty_like(z_s).uniform_(-0.5, 0.5)
        mean, v = self.h_s(z_noisy * zig)
        mean_s, scale_s = mean * g, self.scale_from_index(v) * g
        y_s = y * g
        y_noisy = y_s + torch.empty_like(y_s).uniform_(-0.5, 0.5)
        y_round = y_s + (torch.round(y_s - mean_s) + mean_s - y_s).detach()  # straight-through
        z_c = self.g_s(y_round * ig)
        return {"z_c": z_c, "y_likelihoods": gaussian_likelihood(y_noisy, mean_s, scale_s),
                "z_likelihoods": self.prior.likelihood(z_noisy)}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """The compressed latent z_c as decoding gives it (rounded y and z; float h_s), for a
        batch: x (B, 32, h, w), q (B,) -> z_c (B, 32, h, w). Used to train the decoder."""
        g, ig = (interp_rows(p, q)[:, :, None, None] for p in (self.log_gain, self.log_igain))
        zg, zig = (interp_rows(p, q)[:, :, None, None] for p in (self.log_zgain, self.log_zigain))
        y = self.g_a(x)
        z_hat = torch.round(self.h_a(y) * zg).clamp(-self.cfg.radius_z, self.cfg.radius_z)
        mean, _ = self.h_s(z_hat * zig)
        mean_s = mean * g
        sym = torch.round(y * g - mean_s).clamp(-self.cfg.radius_y, self.cfg.radius_y)
        return self.g_s((sym + mean_s) * ig)

    # -- coding ---------------------------------------------------------------------------
    def _state(self) -> "CodingState":
        if self.coding is None:
            raise RuntimeError("coding tables are not built: call build_coding_state() first")
        return self.coding

    def _entropy_params(self, z_hat: torch.Tensor, q_byte: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact float64 means (scaled domain) and int64 scale indexes of y from integer z_hat."""
        st = self._state()
        z_int = z_hat.long() * st.zigain_fp[q_byte].long()[None, :, None, None]
        mean, v = st.h_s_int(z_int)
        mean_s = mean * st.gain[q_byte].double()[None, :, None, None]
        idx = torch.round(v + st.index_offset[q_byte][None, :, None, None])
        return mean_s, idx.clamp(0, self.cfg.n_scales - 1).long()

    @torch.no_grad()
    def analyse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (1, 32, h, w) -> y (1, M, h/4, w/4) and z (1, Cz, h/16, w/16), before any gain:
        what `compress_latents` codes at any q byte (and what encode-time optimisation tunes)."""
        y = self.g_a(x)
        return y, self.h_a(y)

    @torch.no_grad()
    def compress(self, x: torch.Tensor, q_byte: int) -> tuple[bytes, float]:
        """x (1, 32, h, w) with h, w multiples of 16 -> (bytes, model's estimated bits)."""
        return self.compress_latents(*self.analyse(x), q_byte)

    @torch.no_grad()
    def compress_latents(self, y: torch.Tensor, z: torch.Tensor, q_byte: int) -> tuple[bytes, float]:
        """y, z from `analyse` (or tuned) -> (bytes, model's estimated bits) at q byte q_byte."""
        st, cfg = self._state(), self.cfg
        z_s = z * st.zgain[q_byte].float()[None, :, None, None]
        z_hat = torch.round(z_s).clamp(-cfg.radius_z, cfg.radius_z).long()
        mean_s, idx = self._entropy_params(z_hat, q_byte)
        y_s = y.double() * st.gain[q_byte].double()[None, :, None, None]
        sym = torch.round(y_s - mean_s).clamp(-cfg.radius_y, cfg.radius_y).long()
        enc = range_coder.Encoder()
        bits = 0.0
        zs = z_hat[0].reshape(cfg.cz, -1).numpy() + cfg.radius_z
        for c in range(cfg.cz):
            enc.encode(zs[c], st.z_tables[c].numpy())
            bits += _table_bits(zs[c], st.z_tables[c])
        flat_sym, flat_idx = sym.flatten().numpy() + cfg.radius_y, idx.flatten().numpy()
        for level in np.unique(flat_idx):
            s = flat_sym[flat_idx == level]
            enc.encode(s, st.y_tables[level].numpy())
            bits += _table_bits(s, st.y_tables[level])
        return enc.finish(), bits

    @torch.no_grad()
    def decompress(self, data: bytes, latent_hw: tuple[int, int], q_byte: int) -> torch.Tensor:
        """bytes -> z_c (1, 32, h, w) for a padded latent of size latent_hw."""
        st, cfg = self._state(), self.cfg
        h, w = latent_hw
        zh, zw = h // 16, w // 16
        dec = range_coder.Decoder(data)
        z = np.stack([dec.decode(zh * zw, st.z_tables[c].numpy()) for c in range(cfg.cz)])
        z_hat = torch.from_numpy(z.astype(np.int64) - cfg.radius_z).reshape(1, cfg.cz, zh, zw)
        mean_s, idx = self._entropy_params(z_hat, q_byte)
        flat_idx = idx.flatten().numpy()
        flat_sym = np.zeros(flat_idx.size, dtype=np.int64)
        for level in np.unique(flat_idx):
            sel = flat_idx == level
            flat_sym[sel] = dec.decode(int(sel.sum()), st.y_tables[level].numpy())
        sym = torch.from_numpy(flat_sym - cfg.radius_y).reshape(mean_s.shape)
        y_hat = (sym.double() + mean_s) * st.igain[q_byte].double()[None, :, None, None]
        return self.g_s(y_hat.float())


def _table_bits(symbols: np.ndarray, freq: torch.Tensor) -> float:
    """Ideal code length of symbols under an integer table, in bits."""
    if symbols.size == 0:
        return 0.0
    f = freq.numpy().astype(np.float64)[symbols]
    return float(np.sum(16 - np.log2(f)))


@dataclass
class CodingState:
    """Everything the entropy coder needs, tabulated for exact, portable coding."""

    z_tables: torch.Tensor  # (Cz, 2*radius_z+1) int32
    y_tables: torch.Tensor  # (n_scales, 2*radius_y+1) int32
    gain: torch.Tensor  # (256, M) float32, per q byte
    igain: torch.Tensor  # (256, M) float32
    zgain: torch.Tensor  # (256, Cz) float32
    zigain_fp: torch.Tensor  # (256, Cz) int32, fixed point with ZIG_FRAC_BITS
    index_offset: torch.Tensor  # (256, M) float64: log(gain) in scale-index steps
    h_s_int: IntegerHyperSynthesis

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {k: v for k, v in self.__dict__.items() if isinstance(v, torch.Tensor)}
        out.update({f"h_s_int.{k}": v for k, v in self.h_s_int.state_dict().items()})
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], m: int) -> "CodingState":
        hs = {k[len("h_s_int."):].replace("_", ".", 1): v for k, v in t.items()
              if k.startswith("h_s_int.")}
        kw = {k: v for k, v in t.items() if not k.startswith("h_s_int.")}
        return cls(h_s_int=IntegerHyperSynthesis(hs, m), **kw)


@torch.no_grad()
def build_coding_state(codec: LatentCodec, calib_latents: list[torch.Tensor]) -> CodingState:
    """Tabulate gains for all q bytes, build probability tables and the integer h_s."""
    cfg = codec.cfg
    qs = torch.arange(Q_STEPS + 1, dtype=torch.float64) / Q_STEPS
    rows = {name: interp_rows(getattr(codec, name).double(), qs)
            for name in ("log_gain", "log_igain", "log_zgain", "log_zigain")}
    zig_fp = torch.round(rows["log_zigain"] * (1 << ZIG_FRAC_BITS)).clamp_min(1)
    calib = []
    for x in calib_latents:  # typical h_s inputs across the rate range
        z = codec.h_a(codec.g_a(x))
        for qi in (0, Q_STEPS // 2, Q_STEPS):
            z_hat = torch.round(z * rows["log_zgain"][qi].float()[None, :, None, None])
            calib.append((z_hat * zig_fp[qi].float()[None, :, None, None] / (1 << ZIG_FRAC_BITS)))
    state = integerize(codec.h_s, calib, input_scale=1.0 / (1 << ZIG_FRAC_BITS))
    return CodingState(
        z_tables=codec.prior.tables(cfg.radius_z),
        y_tables=gaussian_tables(scale_table(cfg.n_scales, cfg.scale_min, cfg.scale_max), cfg.radius_y),
        gain=rows["log_gain"].float(), igain=rows["log_igain"].float(),
        zgain=rows["log_zgain"].float(), zigain_fp=zig_fp.to(torch.int32),
        index_offset=torch.log(rows["log_gain"].float().double()) / codec.log_scale_step,
        h_s_int=IntegerHyperSynthesis(state, cfg.m))


def config_dict(cfg: CodecConfig) -> dict:
    return asdict(cfg)
