"""PSNR and MS-SSIM: known properties and a committed reference value (pytorch_msssim)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ulic.errors import UlicError
from ulic.evaluation.metrics import ms_ssim, ms_ssim_scales, psnr

FIXTURES = Path(__file__).parent / "fixtures"


def make_image(seed: int, h: int, w: int) -> torch.Tensor:
    """A seeded smooth-plus-texture RGB image in [0, 1], 8-bit valued, shape (1, 3, H, W)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for _ in range(3):
        fx, fy, ph = rng.uniform(0.02, 0.2, 2).tolist() + [rng.uniform(0, 6.28)]
        chans.append(0.5 + 0.3 * np.sin(fx * xx + ph) * np.cos(fy * yy) + 0.1 * rng.standard_normal((h, w)))
    a = np.clip(np.round(np.stack(chans) * 255), 0, 255) / 255
    return torch.from_numpy(a)[None].float()


def make_pair(seed: int, h: int, w: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, image + seeded Gaussian noise of std `noise`), both 8-bit valued in [0, 1]."""
    a = make_image(seed, h, w)
    rng = np.random.default_rng(seed + 1000)
    b = np.clip(np.round((a.numpy() + noise * rng.standard_normal(a.shape)) * 255), 0, 255) / 255
    return a, torch.from_numpy(b).float()


def test_identical_images():
    a = make_image(0, 128, 160)
    assert psnr(a, a) == math.inf
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_psnr_known_value():
    a = torch.zeros(1, 3, 16, 16)
    b = a.clone()
    b[..., 0, 0] = 1.0  # one pixel of 255 error in each channel: MSE = 255**2 / 256
    assert psnr(a, b) == pytest.approx(10 * math.log10(256), abs=1e-9)


def test_rounds_to_8_bits():
    a = make_image(1, 64, 64)
    assert psnr(a, a + 0.4 / 255) == math.inf


def test_psnr_scores_exactly_the_pixels_of_the_png():
    """Decoder outputs whose x * 255 rounds differently in float32 and float64 (e.g. 0.80588233
    -> 206 vs 205): PSNR sees the same 8-bit pixels `to_pil` writes, so against the PNG it is +inf."""
    from ulic.imageio import load_image, to_pil

    x = torch.tensor([0.8058823347091675, 0.9862744808197021, 0.9470587968826294]).view(1, 3, 1, 1)
    x = x.expand(1, 3, 16, 16).contiguous()
    assert psnr(x, load_image(to_pil(x))) == math.inf


def test_monotone_with_noise():
    p, m = [], []
    for noise in (0.01, 0.03, 0.1, 0.3):
        a, b = make_pair(3, 160, 192, noise)
        p.append(psnr(a, b))
        m.append(ms_ssim(a, b))
    assert all(x > y for x, y in zip(p, p[1:], strict=False))
    assert all(x > y for x, y in zip(m, m[1:], strict=False))
    assert 0 <= m[-1] < m[0] < 1


def test_scales_for_small_images():
    assert ms_ssim_scales(512, 768) == 5
    assert ms_ssim_scales(161, 300) == 5
    assert ms_ssim_scales(128, 128) == 4
    assert ms_ssim_scales(64, 64) == 3
    with pytest.raises(UlicError):
        ms_ssim_scales(16, 64)
    a, b = make_pair(4, 128, 128, 0.05)
    assert 0 < ms_ssim(a, b) < 1


def test_shape_mismatch_is_user_error():
    with pytest.raises(UlicError):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def test_ms_ssim_matches_reference_implementation():
    ref = json.loads((FIXTURES / "eval_ms_ssim_reference.json").read_text())
    for c in ref["cases"]:
        a, b = make_pair(c["seed"], c["h"], c["w"], c["noise"])
        assert ms_ssim(a, b) == pytest.approx(c["ms_ssim"], abs=1e-4)


def _natural(seed: int, h: int = 192, w: int = 256) -> torch.Tensor:
    """(1, 3, h, w) in [0, 1]: smoothed noise, no preferred period."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 3, h + 4, w + 4, generator=g), 5, 1)
    return (x - x.min()) / (x.max() - x.min())


def test_grid8_measures_an_8px_pattern_in_grey_levels():
    """A sine of amplitude 10 grey levels with an 8-px period down the rows (the stage-3 stripes)
    scores its RMS, 10 / sqrt(2), whatever its phase; other periods and the original itself
    score about 0; a pattern across the columns shows in the columns' amplitude only."""
    from ulic.evaluation.artefacts import grid8, grid_amplitude

    x = _natural(0)
    rows = torch.arange(x.shape[2]).float()[:, None].expand(-1, x.shape[3])
    for period, phase, expect in ((8, 0.7, 10 / 2**0.5), (8, 2.0, 10 / 2**0.5), (5, 0.7, 0.0), (13, 0.7, 0.0)):
        wave = (10 / 255) * torch.sin(2 * torch.pi * rows / period + phase)
        assert grid8(x, (x + wave).clamp(0, 1)) == pytest.approx(expect, abs=0.8), (period, phase)
    cols = torch.arange(x.shape[3]).float()[None, :].expand(x.shape[2], -1)
    r, c = grid_amplitude((x + (10 / 255) * torch.sin(2 * torch.pi * cols / 8)).clamp(0, 1))
    r0, c0 = grid_amplitude(x)
    assert (c * c - c0 * c0) ** 0.5 == pytest.approx(10 / 2**0.5, abs=0.8) and abs(r - r0) < 0.5
    assert grid8(x, x) == 0.0


def test_grid8_refuses_small_or_mismatched_images():
    from ulic.evaluation.artefacts import grid8

    with pytest.raises(UlicError, match="too small"):
        grid8(torch.rand(1, 3, 32, 96), torch.rand(1, 3, 32, 96))
    with pytest.raises(UlicError, match="sizes differ"):
        grid8(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 72))


def test_lattice_loss_sees_only_the_error_locked_to_the_8px_grid():
    """The training counterpart of grid8: an 8-px sine error of amplitude a costs a^2 / 2 (per
    axis, any phase); the same energy at another period, and a smooth ramp, cost about nothing;
    it is per sample and has a gradient."""
    from ulic.evaluation.artefacts import lattice_loss

    x = _natural(1, 128, 128).expand(2, -1, -1, -1).contiguous()
    rows = torch.arange(128.0)[:, None].expand(-1, 128)
    a = 0.04
    assert torch.equal(lattice_loss(x, x), torch.zeros(2))
    for period, phase, expect in ((8, 0.3, a * a / 2), (8, 1.9, a * a / 2), (5, 0.3, 0.0), (12, 0.3, 0.0)):
        got = lattice_loss(x + a * torch.sin(2 * torch.pi * rows / period + phase), x)
        assert got.shape == (2,) and got[0] == pytest.approx(expect, abs=0.1 * a * a), (period, phase)
    ramp = 0.2 * rows / 128
    assert lattice_loss(x + ramp, x)[0] < 0.01 * a * a
    y = x.clone().requires_grad_(True)
    lattice_loss(y + a * torch.sin(2 * torch.pi * rows.T / 8), x).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    with pytest.raises(UlicError, match="too small"):
        lattice_loss(torch.rand(1, 3, 24, 128), torch.rand(1, 3, 24, 128))
