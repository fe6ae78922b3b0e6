"""RD plots (matplotlib), BD-rate and matched-rate tables, and the HTML report with crops."""

from __future__ import annotations

import csv
import html
import json
import math
import os
from pathlib import Path

import numpy as np

from ulic.errors import UlicError

PLOT_METRICS = (
    ("psnr-rgb", "PSNR (dB, RGB)", True),
    ("ms-ssim", "MS-SSIM", True),
    ("lpips", "LPIPS (AlexNet v0.1)", False),
    ("dists", "DISTS", False),
)
ANCHOR_COLS = {"psnr-rgb": "psnr", "ms-ssim": "msssim", "lpips": "lpips", "dists": "dists"}
TARGETS = (0.02, 0.03, 0.05)
CROP = 256


def load_results(out: Path) -> list[dict]:
    """All CompressAI-style result JSONs in `out`, sorted by name."""
    res = []
    for p in sorted(out.glob("*.json")):
        try:
            d = json.loads(p.read_text())
        except ValueError:
            continue
        if isinstance(d, dict) and "name" in d and "bpp" in d.get("results", {}):
            res.append(d)
    return res


def anchors_path(given: str | None) -> Path | None:
    """The published-anchors CSV: --anchors, else $ULIC_SHARED/anchors/published_kodak.csv
    (the Makefile sets ULIC_SHARED when the shared data folder is present), else none."""
    if given:
        return Path(given)
    root = os.environ.get("ULIC_SHARED")
    p = Path(root) / "anchors" / "published_kodak.csv" if root else None
    return p if p is not None and p.is_file() else None


def load_anchors(path: Path | None) -> dict[str, dict[str, list[float]]]:
    """Published curves: method -> {bpp, psnr-rgb, ms-ssim, lpips, dists} (None where not given)."""
    if path is None or not path.is_file():
        return {}
    out: dict[str, dict[str, list]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            d = out.setdefault(row["method"], {k: [] for k in ["bpp", *ANCHOR_COLS]})
            d["bpp"].append(float(row["bpp"]))
            for k, c in ANCHOR_COLS.items():
                d[k].append(float(row[c]) if row.get(c) else None)
    return out


def pareto(bpp: list[float], val: list, higher: bool) -> tuple[list[float], list[float]]:
    """Points not beaten by a cheaper point (the codec's best curve over its settings), by bpp."""
    pts = sorted((b, v) for b, v in zip(bpp, val, strict=False) if v is not None and math.isfinite(v))
    xs, ys, best = [], [], None
    for b, v in pts:
        if best is None or (v > best if higher else v < best):
            xs.append(b)
            ys.append(v)
            best = v
    return xs, ys


def lower_hull(bpp: list[float], val: list[float]) -> tuple[list[float], list[float]]:
    """The lower convex hull of (log bpp, value) points sorted by bpp: the envelope that adding a
    setting can only lower (a Pareto point above the chord of its neighbours is dropped), so the
    matched-rate figures of a denser grid are never worse."""
    hull: list[tuple[float, float]] = []
    for b, v in zip(bpp, val, strict=True):
        x = math.log(b)
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (v - y1) - (y2 - y1) * (x - x1) > 0:  # hull[-1] on or below the chord: keep
                break
            hull.pop()
        hull.append((x, v))
    return [math.exp(x) for x, _ in hull], [y for _, y in hull]


def at_rate(bpp: list[float], val: list[float], target: float) -> float | None:
    """Metric at `target` bpp by linear interpolation in log-rate on a Pareto curve; None outside it."""
    if len(bpp) < 2 or not bpp[0] <= target <= bpp[-1]:
        return None
    return float(np.interp(math.log(target), np.log(bpp), val))


def plot(results: list[dict], anchors: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for key, label, higher in PLOT_METRICS:
        fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
        for i, d in enumerate(results):
            r = d["results"]
            if key not in r:
                continue
            xs, ys = pareto(r["bpp"], r[key], higher)
            c = f"C{i % 10}"
            ax.plot(r["bpp"], r[key], "o", color=c, alpha=0.3, ms=4)
            ax.plot(xs, ys, "-o", color=c, label=d["name"], lw=2 if d["name"].startswith("ulic") else 1.3, ms=4)
        for j, (m, d) in enumerate(sorted(anchors.items())):
            pts = [(b, v) for b, v in zip(d["bpp"], d[key], strict=False) if v is not None]
            if pts:
                pts.sort()
                ax.plot(
                    *zip(*pts, strict=False),
                    "--",
                    marker=".",
                    color=f"C{(j + len(results)) % 10}",
                    alpha=0.7,
                    lw=1,
                    label=f"{m} (published)",
                )
        ax.set_xscale("log")
        ax.set_xlim(0.002, 0.2)
        ax.set_xlabel("bits per pixel (log scale)")
        ax.set_ylabel(label + ("" if higher else "  (lower is better)"))
        ax.set_title(f"Kodak: {label} vs rate")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5, ncol=2)
        fig.tight_layout()
        name = f"rd_{key.replace('-', '_')}.png"
        fig.savefig(out / name, metadata={"Software": None})
        plt.close(fig)
        files.append(name)
    return files


def bd_table(results: list[dict], anchors: dict) -> tuple[str, list[list[str]]]:
    """BD-rate (pchip, on Pareto curves) of each codec against the reference: hevc if present,
    for the metrics its dense grid also has, the settings of hevc and hevc-dense together (so
    the reference is as good as HEVC really is; docs/evaluation.md)."""
    from ulic.evaluation.bdrate import bd_rate

    curves = {d["name"]: d["results"] for d in results}
    for m, d in anchors.items():
        curves[f"{m} (published)"] = d
    ref = next((n for n in ("hevc", "avif") if n in curves), next(iter(curves), None))
    dense = curves.get(f"{ref}-dense", {})
    refs, reference = {}, {}  # per metric: the reference's name and its (bpp, values)
    for key, _, _ in PLOT_METRICS:
        base = curves.get(ref, {}) if ref else {}
        extra = dense if key in dense else {"bpp": [], key: []}
        refs[key] = f"{ref} + {ref}-dense" if key in dense else ref
        reference[key] = (base.get("bpp", []) + extra["bpp"], base.get(key, []) + extra[key])
    rows = []
    for name, r in curves.items():
        row = [name]
        for key, _, higher in PLOT_METRICS:
            try:
                xa, ya = pareto(*reference[key], higher)
                xb, yb = pareto(r["bpp"], r.get(key, []), higher)
                row.append(f"{bd_rate(xa, ya, xb, yb, 'pchip', higher):+.1f}%")
            except (UlicError, KeyError, TypeError):
                row.append("n/a")
        rows.append(row)
    used = sorted({v for v in refs.values() if v})
    return " / ".join(f"{v} ({', '.join(k for k, r in refs.items() if r == v)})" for v in used) or "", rows


def matched_table(results: list[dict], anchors: dict, key: str = "lpips") -> list[list[str]]:
    """Metric at the target rates, per codec (interpolated on the lower convex hull of the
    Pareto curve in log-rate)."""
    rows = []
    curves = [(d["name"], d["results"]) for d in results] + [(f"{m} (published)", d) for m, d in anchors.items()]
    for name, r in curves:
        xs, ys = lower_hull(*pareto(r["bpp"], r.get(key, []), False)) if key in r else ([], [])
        rows.append([name] + [("n/a" if (v := at_rate(xs, ys, t)) is None else f"{v:.4f}") for t in TARGETS])
    return rows


CROP_RATES = (0.03,)  # report crops only at the headline rate (keeps results/ small)
# Report crops at 100%: (what it shows, Kodak image, left, top); CROP x CROP pixels each.
REGIONS = (
    ("face", "kodim15", 288, 64),
    ("text", "kodim10", 100, 0),
    ("foliage", "kodim13", 32, 72),
    ("water", "kodim13", 300, 256),
    ("feathers", "kodim23", 470, 40),
)


def _coded_png(d: dict, t: float, stem: str, cache: str) -> tuple[Path | None, str, float] | None:
    """(decoded PNG or None when the cache no longer has it, setting, mean bpp) of one result
    set at the setting closest to rate t; None when no setting is within 1.5x of t."""
    r = d["results"]
    i = int(np.argmin([abs(math.log(b / t)) for b in r["bpp"]]))
    if abs(math.log(r["bpp"][i] / t)) > math.log(1.5):
        return None
    s = r["setting"][i]
    rel = Path(d["name"]) / s.replace(":", "_") / (stem + ".png")
    found = [p for p in [Path(cache) / rel, *Path(cache).glob(f"ulic-model-*/{rel}")] if p.is_file()]
    png = max(found, key=lambda p: p.stat().st_mtime) if found else None  # the newest model's
    return png, s, r["bpp"][i]


def crops(results: list[dict], out: Path, cache: str, data: str | None) -> list[tuple[str, list[tuple[str, str]]]]:
    """100% crops of REGIONS (face, text, foliage, water, feathers) for each codec at the
    setting closest to each target rate; one section per (rate, region). A crop made by an
    earlier run is kept when the eval cache no longer holds its decoded image (a fresh clone
    has no cache; rerun that codec's `ulic eval` to remake it)."""
    from PIL import Image

    if not data or not Path(data).is_dir():
        return []
    (out / "crops").mkdir(exist_ok=True)
    sections = []
    for t in CROP_RATES:
        for what, stem, left, top in REGIONS:
            src = Path(data) / f"{stem}.png"
            if not src.is_file():
                continue
            box = (left, top, left + CROP, top + CROP)
            ref_name = f"crops/{what}_original.png"
            Image.open(src).convert("RGB").crop(box).save(out / ref_name)
            cells = [(f"original ({stem})", ref_name)]
            for d in results:
                got = _coded_png(d, t, stem, cache)
                if got is None:
                    continue
                png, s, bpp = got
                name = f"crops/{what}_{t:g}_{d['name']}.png"
                if png is not None:
                    Image.open(png).convert("RGB").crop(box).save(out / name)
                elif not (out / name).is_file():
                    continue  # neither the decoded image nor an earlier crop of it
                cells.append((f"{d['name']} {s} (set mean {bpp:.4f} bpp)", name))
            sections.append((f"{what} near {t:g} bpp", cells))
    return sections


def _table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{b}</table>"


def build_report(out: Path, anchors: str | None, cache: str, data: str | None) -> None:
    """Write rd_*.png, bdrate.csv, matched_rates.csv and report.html into `out`."""
    out = Path(out)
    results = load_results(out)
    if not results:
        raise UlicError(f"{out}: no result JSONs to report on (run `ulic eval --codec ...` first)")
    anc = load_anchors(anchors_path(anchors))
    pngs = plot(results, anc, out)
    ref, bd = bd_table(results, anc)
    heads = ["codec"] + [f"BD-rate {k}" for k, _, _ in PLOT_METRICS]
    with open(out / "bdrate.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([heads] + bd)
    mt = matched_table(results, anc)
    mheads = ["codec"] + [f"LPIPS @ {t:g} bpp" for t in TARGETS]
    with open(out / "matched_rates.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([mheads] + mt)
    parts = [
        "<!doctype html><meta charset=utf-8><title>ulic evaluation: Kodak</title>",
        "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}figure{display:inline-block;margin:4px}"
        "figcaption{font-size:12px;max-width:256px}img.rd{width:660px}</style>",
        "<h1>ulic evaluation on Kodak</h1>",
        "<p>Rates count only the bytes a decoder needs (docs/evaluation.md). Curves are each codec's best "
        "settings (Pareto front); faint dots are all settings. Dashed curves are published figures "
        "(not re-run here; protocols differ in detail).</p>",
    ]
    parts += [f'<img class=rd src="{p}">' for p in pngs]
    parts.append(f"<h2>BD-rate against {html.escape(ref)} (pchip, overlapping range; negative = fewer bits)</h2>")
    parts.append(_table(heads, bd))
    parts.append("<h2>LPIPS at matched rates (interpolated in log-rate; n/a = outside the measured range)</h2>")
    parts.append(_table(mheads, mt))
    for title, cells in crops(results, out, cache, data):
        parts.append(f"<h2>{html.escape(title)} (100% crops)</h2><div>")
        parts += [
            f'<figure><img src="{html.escape(src)}"><figcaption>{html.escape(cap)}</figcaption></figure>'
            for cap, src in cells
        ]
        parts.append("</div>")
    (out / "report.html").write_text("\n".join(parts) + "\n")
