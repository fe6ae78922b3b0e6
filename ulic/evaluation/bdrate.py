"""Bjøntegaard delta rate (BD-rate) and delta metric between two rate-distortion curves.

BD-rate is the mean relative rate difference of curve B (test) against curve A (anchor) at equal
quality, over the range of quality both curves cover: log-rate is fitted as a function of the
metric, both fits are integrated over the overlap, and the mean log difference d gives
100 * (exp(d) - 1) percent. Negative means B needs fewer bits. Two fits are offered:
- "cubic": the original VCEG-M33 least-squares cubic polynomial (needs >= 4 points per curve);
- "pchip": piecewise cubic Hermite interpolation (as in the JVET/CompressAI tools; >= 2 points).
For lower-is-better metrics (LPIPS, DISTS, FID) pass higher_is_better=False: the metric is negated
so that quality increases with rate; the integral is otherwise unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ulic.errors import UlicError

METHODS = ("cubic", "pchip")
LOWER_IS_BETTER = {"lpips", "lpips_alex", "lpips_vgg", "dists", "fid", "kid", "mse"}


def _curve(rate: Sequence[float], metric: Sequence[float], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated (log-rate, metric) arrays of one curve, non-finite points dropped."""
    r = np.asarray(rate, dtype=np.float64)
    m = np.asarray(metric, dtype=np.float64)
    if r.shape != m.shape or r.ndim != 1:
        raise UlicError(f"BD-rate: curve {name} needs equally many rate and metric values")
    ok = np.isfinite(r) & np.isfinite(m) & (r > 0)
    if ok.sum() < 2:
        raise UlicError(f"BD-rate: curve {name} has fewer than 2 usable points")
    return np.log(r[ok]), m[ok]


def _sorted(x: np.ndarray, y: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(x)
    x, y = x[order], y[order]
    if np.any(np.diff(x) <= 0):
        raise UlicError(f"BD-rate: curve {name} has repeated values on the integration axis")
    return x, y


def _integral(m: np.ndarray, lr: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Integral over [lo, hi] of the fit of lr as a function of m."""
    if method == "cubic":
        if len(m) < 4:
            raise UlicError("BD-rate (cubic) needs at least 4 points per curve; use method='pchip'")
        p = np.polyint(np.polyfit(m, lr, 3))
        return float(np.polyval(p, hi) - np.polyval(p, lo))
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        return float(PchipInterpolator(m, lr).integrate(lo, hi))
    raise UlicError(f"BD-rate: unknown method {method!r} (choose from {', '.join(METHODS)})")


def overlap(metric_a: np.ndarray, metric_b: np.ndarray) -> tuple[float, float]:
    """The interval both sorted axes cover; UlicError if they do not overlap."""
    lo, hi = max(metric_a[0], metric_b[0]), min(metric_a[-1], metric_b[-1])
    if not hi > lo:
        raise UlicError(
            f"BD-rate: the curves do not overlap in quality (anchor covers "
            f"[{metric_a[0]:.4g}, {metric_a[-1]:.4g}], test covers [{metric_b[0]:.4g}, "
            f"{metric_b[-1]:.4g}]); no rate difference can be measured"
        )
    return float(lo), float(hi)


def bd_rate(
    rate_a: Sequence[float],
    metric_a: Sequence[float],
    rate_b: Sequence[float],
    metric_b: Sequence[float],
    method: str = "pchip",
    higher_is_better: bool = True,
) -> float:
    """BD-rate of test curve B against anchor A, in percent (negative: B saves bits)."""
    sign = 1.0 if higher_is_better else -1.0
    la, ma = _curve(rate_a, metric_a, "A (anchor)")
    lb, mb = _curve(rate_b, metric_b, "B (test)")
    ma, la = _sorted(sign * ma, la, "A (anchor)")
    mb, lb = _sorted(sign * mb, lb, "B (test)")
    lo, hi = overlap(ma, mb)
    d = (_integral(mb, lb, lo, hi, method) - _integral(ma, la, lo, hi, method)) / (hi - lo)
    return float(100 * (np.exp(d) - 1))


def bd_metric(
    rate_a: Sequence[float],
    metric_a: Sequence[float],
    rate_b: Sequence[float],
    metric_b: Sequence[float],
    method: str = "pchip",
) -> float:
    """Mean metric difference B - A at equal rate (e.g. BD-PSNR), over the overlapping log-rate range."""
    la, ma = _sorted(*_curve(rate_a, metric_a, "A (anchor)"), "A (anchor)")
    lb, mb = _sorted(*_curve(rate_b, metric_b, "B (test)"), "B (test)")
    lo, hi = overlap(la, lb)
    return float((_integral(lb, mb, lo, hi, method) - _integral(la, ma, lo, hi, method)) / (hi - lo))
