"""Effort 3 (the pixel objective of `ulic.diffusion.pfo`) at other LPIPS-VGG weights and step
counts, on a folder of photos, against the plain encoder; JSON out. For choosing the level's
settings on training photos (never Kodak).

    python -m ulic.tools.pfo_sweep --data cache/val --quality 50 \
        --variants 0.25:16 1:16 0.25:32 --out results/ablation/pfo_sweep.json

Each variant (weight:steps) replaces effort 3's settings for its run only; the files are
ordinary ones, decoded by the default decoder and scored with PSNR and LPIPS-Alex (AlexNet is
in no objective; VGG16 is, so DISTS is not reported).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from ulic.tools.common import emit_json

LEVEL = 3  # the pixel-objective effort level


@contextmanager
def effort_variant(weight: float, steps: int) -> Iterator[None]:
    """Effort 3 with this LPIPS-VGG weight and step count while the block runs."""
    from ulic.diffusion.pfo import EFFORTS

    saved = EFFORTS[LEVEL]
    EFFORTS[LEVEL] = dataclasses.replace(saved, weight=weight, steps=steps)
    try:
        yield
    finally:
        EFFORTS[LEVEL] = saved


def score(photos: list[Path], quality: float, effort: int) -> dict:
    """Mean bpp, PSNR, LPIPS-Alex and encode seconds of the photos at one setting."""
    from ulic import api
    from ulic.evaluation.lpips import lpips
    from ulic.imageio import load_image
    from ulic.pixels import psnr

    rows = []
    for path in photos:
        x = load_image(path)
        t = time.perf_counter()
        data = api.encode(path, quality=quality, effort=effort).data
        seconds = time.perf_counter() - t
        img = api.decode(data).image
        rows.append((8 * len(data) / (x.shape[2] * x.shape[3]), psnr(img, x), lpips(img, x), seconds))
    bpp, p, lp, s = (statistics.mean(c) for c in zip(*rows, strict=True))
    return {"bpp": round(bpp, 5), "psnr": round(p, 3), "lpips_alex": round(lp, 4), "encode_s": round(s, 1)}


def main(argv: list[str] | None = None) -> int:
    from ulic.imageio import list_images

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a folder of photos (training photos, not Kodak)")
    ap.add_argument("--quality", type=float, nargs="+", default=[50.0])
    ap.add_argument("--variants", nargs="+", default=["0.25:16"], help="weight:steps of effort 3")
    ap.add_argument("--plain", action="store_true", help="also the plain encoder (effort 0)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    photos = list_images(a.data)
    rows = []
    for q in a.quality:
        if a.plain:
            rows.append({"quality": q, "effort": 0, **score(photos, q, 0)})
        for v in a.variants:
            weight, steps = float(v.split(":")[0]), int(v.split(":")[1])
            with effort_variant(weight, steps):
                rows.append(
                    {"quality": q, "effort": LEVEL, "weight": weight, "steps": steps, **score(photos, q, LEVEL)}
                )
            print(rows[-1], flush=True)
    emit_json({"data": a.data.name, "photos": len(photos), "rows": rows}, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
