"""Dense settings grids for the classical baselines: the settings that decide each codec's lower
envelope (the best any setting reaches) at given rates, so that matched-rate figures are as good
as the codec really is.

    python -m ulic.evaluation.grid --codec hevc --data "$ULIC_KODAK_DIR" --targets 0.02 0.03 0.05
        prints, for every downscale factor and target rate, the two neighbouring integer
        qualities whose mean bpp over the images brackets the target, plus the neighbour that a
        grid of quality step 2 would use instead (so the step-2 envelope can be compared with the
        step-1 one: how much refining the grid still moves it). Pass them to
        `ulic eval --codec hevc --name hevc-dense --settings ...`.
    python -m ulic.evaluation.grid --refinement results/kodak/hevc-dense.json
        the envelope at the targets from all settings, from the quality-step-2 subset and
        without each factor, and the largest relative change (how much refining still moves it).

The rate of a setting is its mean bpp over all the images (real bytes); each factor's qualities
are searched by interpolation in log-rate (the rate is monotone in the quality), every image
coded once per probed quality, one factor per worker process. No metrics are computed here.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ulic.evaluation.baselines import run_setting, setting_name

FACTORS = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)
Q_RANGE = {"hevc": (0, 60), "avif": (0, 70), "webp": (0, 80), "jpeg": (1, 60), "jxl": (1, 25)}
DESCENDING = {"jxl"}  # quality is a distance: more bytes at lower values


def mean_bpp(setting: str, images: list[str]) -> float:
    """Mean bits per pixel of one setting over the images (8 x file bytes / original pixels)."""
    from ulic.evaluation.runner import load_rgb

    bpp = []
    for path in images:
        rgb = load_rgb(path)
        bpp.append(8 * run_setting(rgb, setting).nbytes / (rgb.shape[0] * rgb.shape[1]))
    return float(np.mean(bpp))


def bracket(rate, lo: int, hi: int, target: float) -> tuple[int, int] | None:
    """Adjacent integers (a, a + 1) in [lo, hi] with rate(a) <= target <= rate(a + 1), for an
    increasing `rate` (memoise it: each call may probe a few points); None if target is outside
    [rate(lo), rate(hi)]. Interpolation in log-rate, falling back to bisection."""
    r_lo, r_hi = rate(lo), rate(hi)
    if not r_lo <= target <= r_hi:
        return None
    while hi - lo > 1:
        guess = lo + (math.log(target) - math.log(r_lo)) / max(1e-12, math.log(r_hi) - math.log(r_lo)) * (hi - lo)
        mid = min(hi - 1, max(lo + 1, round(guess)))
        if hi - lo > 3 and mid in (lo + 1, hi - 1):  # interpolation stuck at an end: bisect instead
            mid = (lo + hi) // 2
        r_mid = rate(mid)
        if r_mid <= target:
            lo, r_lo = mid, r_mid
        else:
            hi, r_hi = mid, r_mid
    return lo, hi


def factor_settings(args: tuple[str, float, list[float], list[str]]) -> list[tuple[str, float]]:
    """(setting, mean bpp) of the bracketing qualities of one factor for each target rate, plus
    the step-2 grid's bracket (the even-quality neighbour)."""
    codec, factor, targets, images = args
    sign = -1 if codec in DESCENDING else 1
    memo: dict[int, float] = {}

    def rate(k: int) -> float:  # k indexes qualities so that the rate increases with it
        if k not in memo:
            memo[k] = mean_bpp(setting_name(codec, factor, sign * k), images)
        return memo[k]

    lo, hi = Q_RANGE[codec]
    k_lo, k_hi = (lo, hi) if sign > 0 else (-hi, -lo)
    keep: set[int] = set()
    for t in targets:
        found = bracket(rate, k_lo, k_hi, t)
        if found is not None:
            a = found[0]
            even = a + 2 if (sign * a) % 2 == 0 else a - 1  # with (a, a+1) gives the step-2 bracket
            keep |= {a, a + 1}
            if k_lo <= even <= k_hi:
                rate(even)
                keep.add(even)
    return [(setting_name(codec, factor, sign * k), memo[k]) for k in distinct_rates(keep, memo)]


def distinct_rates(keep: set[int], memo: dict[int, float]) -> list[int]:
    """The kept indexes, sorted, one per distinct mean bpp (the encoder maps neighbouring
    qualities to the same quantiser: identical files), an even one where there is a choice, so
    that the even qualities alone still form the quality-step-2 grid."""
    by_rate: dict[float, int] = {}
    for k in sorted(keep, key=lambda k: (k % 2, k)):  # even first
        by_rate.setdefault(memo[k], k)
    return sorted(by_rate.values())


def dense_settings(
    codec: str, images: list[str], targets: list[float], factors: tuple[float, ...] = FACTORS, workers: int = 2
) -> list[tuple[str, float]]:
    """(setting, mean bpp) of every factor's bracketing settings (see `factor_settings`)."""
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(codec, f, list(targets), images) for f in factors]
    if workers <= 1:
        return [s for job in jobs for s in factor_settings(job)]
    with ProcessPoolExecutor(workers) as pool:
        return [s for found in pool.map(factor_settings, jobs) for s in found]


def envelope(results: dict, targets: list[float], keep=lambda setting: True, key: str = "lpips") -> list[float | None]:
    """The lower envelope of a metric (lower convex hull of the kept settings' Pareto front,
    interpolated in log-rate, as the matched-rate tables use) at each target rate; `results` is
    the "results" part of a `ulic eval` JSON."""
    from ulic.evaluation.report import at_rate, lower_hull, pareto

    rows = [(b, v) for b, v, s in zip(results["bpp"], results[key], results["setting"], strict=True) if keep(s)]
    xs, ys = lower_hull(*pareto([b for b, _ in rows], [v for _, v in rows], False))
    return [at_rate(xs, ys, t) for t in targets]


def _not_factor(factor: float, setting: str) -> bool:
    from ulic.evaluation.baselines import parse_setting

    return parse_setting(setting)[1] != factor


def refinement(results: dict, targets: list[float]) -> dict[str, list[float | None]]:
    """The envelope at the targets from all settings and from coarser grids (even qualities
    only; without each factor), and the largest relative change refining brings."""
    from ulic.evaluation.baselines import parse_setting

    grids: dict[str, Callable[[str], bool]] = {
        "all": lambda s: True,
        "quality step 2": lambda s: parse_setting(s)[2] % 2 == 0,
    }
    for f in sorted({parse_setting(s)[1] for s in results["setting"]}):
        grids[f"without d{f:g}"] = functools.partial(_not_factor, f)
    out = {name: envelope(results, targets, keep) for name, keep in grids.items()}
    full = out["all"]
    for name, env in list(out.items()):
        if name != "all":
            change = [abs(a - b) / a for a, b in zip(full, env, strict=True) if a is not None and b is not None]
            out[f"change: {name}"] = [max(change)] if change else [None]
    return out


def main(argv: list[str] | None = None) -> int:
    from ulic.evaluation.runner import list_images

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--refinement", type=Path, default=None, help="a ulic eval JSON: how much coarser grids move the envelope"
    )
    ap.add_argument("--codec", choices=sorted(Q_RANGE))
    ap.add_argument("--data", type=Path)
    ap.add_argument("--targets", type=float, nargs="+", default=[0.02, 0.03, 0.05], help="rates (bpp)")
    ap.add_argument("--factors", type=float, nargs="+", default=list(FACTORS), help="downscale factors")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    if args.refinement is not None:
        import json

        doc = refinement(json.loads(args.refinement.read_text())["results"], args.targets)
        print(json.dumps(doc, indent=1))
        return 0
    if args.codec is None or args.data is None:
        ap.error("--codec and --data are required (or --refinement FILE)")
    images = [str(p) for p in list_images(str(args.data))]
    found = dense_settings(args.codec, images, args.targets, tuple(args.factors), args.workers)
    for s, r in found:
        print(f"{s}\t{r:.5f}", file=sys.stderr)
    print(" ".join(s for s, _ in found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
