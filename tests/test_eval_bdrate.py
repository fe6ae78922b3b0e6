"""BD-rate: identities, the half-rate case, lower-is-better metrics and refusals."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")

from ulic.errors import UlicError  # noqa: E402
from ulic.evaluation.bdrate import bd_metric, bd_rate  # noqa: E402

RATE = np.array([0.01, 0.02, 0.04, 0.08, 0.16])
PSNR = np.array([24.0, 25.6, 27.0, 28.1, 29.0])
LPIPS = np.array([0.42, 0.35, 0.27, 0.20, 0.15])


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_curve_against_itself_is_zero(method):
    assert bd_rate(RATE, PSNR, RATE, PSNR, method) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(RATE, LPIPS, RATE, LPIPS, method, higher_is_better=False) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_half_rate_is_minus_50_percent(method):
    assert bd_rate(RATE, PSNR, RATE / 2, PSNR, method) == pytest.approx(-50.0, abs=0.5)
    assert bd_rate(RATE, LPIPS, RATE / 2, LPIPS, method, higher_is_better=False) == pytest.approx(-50.0, abs=0.5)
    assert bd_rate(RATE / 2, PSNR, RATE, PSNR, method) == pytest.approx(100.0, abs=1.0)


def test_lower_is_better_direction():
    worse = LPIPS + 0.03  # same rates, worse LPIPS: needs more bits for equal quality
    assert bd_rate(RATE, LPIPS, RATE, worse, "pchip", higher_is_better=False) > 0
    better = PSNR + 0.5
    assert bd_rate(RATE, PSNR, RATE, better, "pchip") < 0


def test_order_of_points_does_not_matter():
    idx = [3, 0, 4, 1, 2]
    assert bd_rate(RATE, PSNR, RATE[idx] / 2, PSNR[idx]) == pytest.approx(-50.0, abs=0.5)


def test_bd_metric():
    assert bd_metric(RATE, PSNR, RATE, PSNR + 1.0) == pytest.approx(1.0, abs=1e-9)


def test_refuses_non_overlapping_curves():
    with pytest.raises(UlicError, match="do not overlap"):
        bd_rate(RATE, PSNR, RATE, PSNR + 10)


def test_refuses_bad_input():
    with pytest.raises(UlicError):
        bd_rate(RATE[:3], PSNR[:3], RATE[:3], PSNR[:3], "cubic")
    with pytest.raises(UlicError):
        bd_rate(RATE, PSNR, RATE, PSNR, "linear")
    with pytest.raises(UlicError):
        bd_rate(RATE, PSNR[:4], RATE, PSNR)
