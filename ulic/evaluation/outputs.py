"""Aggregating per-image results and writing them as CSV and CompressAI-style JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

JSON_KEYS = {
    "psnr": "psnr-rgb",
    "ms_ssim": "ms-ssim",
    "lpips_alex": "lpips",
    "lpips_vgg": "lpips-vgg",
    "dists": "dists",
}


def aggregate(rows: list[dict], metrics: tuple[str, ...]) -> list[dict]:
    """Per-setting means over images (PSNR: mean of per-image dB), in first-seen setting order."""
    order: list[str] = []
    by: dict[str, list[dict]] = {}
    for r in rows:
        if r["setting"] not in by:
            order.append(r["setting"])
            by[r["setting"]] = []
        by[r["setting"]].append(r)
    out = []
    for s in order:
        rs = by[s]
        a = {
            "setting": s,
            "images": len(rs),
            "bytes": float(np.mean([r["bytes"] for r in rs])),
            "bpp": float(np.mean([r["bpp"] for r in rs])),
        }
        for m in metrics:
            vals = [r[m] for r in rs if m in r]
            a[m] = float(np.mean(vals)) if vals and all(math.isfinite(v) for v in vals) else float("nan")
        out.append(a)
    return sorted(out, key=lambda a: a["bpp"])


def write_csv(rows: list[dict], path: Path, columns: list[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue())


def compressai_json(
    name: str, description: str, agg: list[dict], metrics: tuple[str, ...], extra: dict | None = None
) -> dict:
    """{"name", "description", "results": {"bpp": [...], "psnr-rgb": [...], ...}} (sorted by bpp)."""
    res: dict[str, list] = {"bpp": [a["bpp"] for a in agg]}
    for m in metrics:
        res[JSON_KEYS.get(m, m)] = [a.get(m) for a in agg]
    for k in ("fid256", "kid256", "fid64", "kid64"):
        if any(k in a for a in agg):
            res[k] = [a.get(k) for a in agg]
    res["setting"] = [a["setting"] for a in agg]
    d = {"name": name, "description": description, "results": res}
    if extra:
        d.update(extra)
    return d


def write_json(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=False, allow_nan=True) + "\n")
