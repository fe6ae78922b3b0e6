"""Dense settings grids for the classical baselines, screened by rate, so that their lower
envelope (the best any setting reaches at each rate) is as good as the codec really is.

    python -m ulic.evaluation.grid --codec hevc --data "$ULIC_KODAK_DIR" --q-step 2
        prints the settings (downscale factors x qualities) whose mean bpp over the images lies
        in [--lo, --hi]; pass them to `ulic eval --codec hevc --settings ...`.

Screening codes every image once per candidate (no metrics), in worker processes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ulic.evaluation.baselines import run_setting, setting_name

FACTORS = (1.5, 2.0, 2.5, 3.0, 4.0)
Q_RANGE = {"hevc": (0, 60), "avif": (0, 70), "webp": (0, 80), "jpeg": (1, 60), "jxl": (1, 25)}


def candidates(codec: str, q_step: float, factors: tuple[float, ...] = FACTORS) -> list[str]:
    lo, hi = Q_RANGE[codec]
    qs = np.arange(lo, hi + 1e-9, q_step)
    return [setting_name(codec, f, float(q)) for f in factors for q in qs]


def _mean_bpp(args: tuple[str, list[str]]) -> float:
    from ulic.evaluation.runner import load_rgb

    setting, images = args
    bpp = []
    for path in images:
        rgb = load_rgb(path)
        bpp.append(8 * run_setting(rgb, setting).nbytes / (rgb.shape[0] * rgb.shape[1]))
    return float(np.mean(bpp))


def screen(settings: list[str], images: list[str], lo: float, hi: float, workers: int = 2) -> list[tuple[str, float]]:
    """(setting, mean bpp) of the settings whose mean bpp over `images` is within [lo, hi]."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        rates = list(pool.map(_mean_bpp, [(s, images) for s in settings]))
    return [(s, r) for s, r in zip(settings, rates, strict=False) if lo <= r <= hi]


def main(argv: list[str] | None = None) -> int:
    from ulic.evaluation.runner import list_images

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codec", required=True, choices=sorted(Q_RANGE))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--q-step", type=float, default=2.0)
    ap.add_argument("--lo", type=float, default=0.012)
    ap.add_argument("--hi", type=float, default=0.075)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    kept = screen(
        candidates(args.codec, args.q_step),
        [str(p) for p in list_images(str(args.data))],
        args.lo,
        args.hi,
        args.workers,
    )
    print(" ".join(s for s, _ in kept))
    return 0


if __name__ == "__main__":
    sys.exit(main())
