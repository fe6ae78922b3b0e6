"""Two result JSONs side by side: per-setting table and BD-rates of a test curve against an anchor."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ulic.errors import UlicError
from ulic.evaluation.bdrate import LOWER_IS_BETTER, bd_rate

COLUMNS = ("bpp", "psnr-rgb", "ms-ssim", "lpips", "dists", "fid64", "kid64")


def _load(out: Path, name: str) -> dict:
    path = out / f"{name}.json"
    try:
        return json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError) as e:
        raise UlicError(f"cannot read results {path}: {e}") from None


def _pairs(res: dict, key: str) -> tuple[list[float], list[float]]:
    """(bpp, value) of the settings that have a finite value for key."""
    pts = [(b, v) for b, v in zip(res["bpp"], res.get(key, []), strict=False) if v is not None and math.isfinite(v)]
    return [b for b, _ in pts], [v for _, v in pts]


def compare(out: Path, anchor: str, test: str) -> dict:
    """Rows of both curves and BD-rate (pchip, overlapping range) of test against anchor per metric."""
    a, t = _load(out, anchor), _load(out, test)
    rows = []
    for name, res in ((anchor, a), (test, t)):
        for i, s in enumerate(res["setting"]):
            rows.append({"name": name, "setting": s, **{k: res[k][i] for k in COLUMNS if k in res}})
    bd: dict[str, float | str] = {}
    for key in COLUMNS[1:]:
        if key not in a or key not in t:
            continue
        higher = key.rstrip("0123456789") not in LOWER_IS_BETTER  # fid64 -> fid
        try:
            bd[key] = round(bd_rate(*_pairs(a, key), *_pairs(t, key), "pchip", higher), 2)
        except UlicError as e:
            bd[key] = f"n/a ({e})"
    return {"anchor": anchor, "test": test, "bd_rate_pct": bd, "rows": rows}


def markdown(cmp: dict) -> str:
    """The comparison as a Markdown table plus one BD-rate line."""
    cols = [c for c in COLUMNS if any(c in r for r in cmp["rows"])]
    lines = ["| name | setting | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for r in cmp["rows"]:
        vals = [r.get(c) for c in cols]
        cells = [
            "" if v is None else (f"{v:.4f}" if c in ("bpp", "ms-ssim", "lpips", "dists", "kid64") else f"{v:.2f}")
            for c, v in zip(cols, vals, strict=False)
        ]
        lines.append(f"| {r['name']} | {r['setting']} | " + " | ".join(cells) + " |")
    bd = ", ".join(f"{k} {v:+.1f}%" if isinstance(v, float) else f"{k} {v}" for k, v in cmp["bd_rate_pct"].items())
    lines.append("")
    lines.append(f"BD-rate of {cmp['test']} against {cmp['anchor']} (pchip, overlapping range): {bd}")
    return "\n".join(lines) + "\n"
