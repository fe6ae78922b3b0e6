"""`ulic bench`: per-stage encode and decode times and peak memory by image size, and the ratio
of the whole codec to the frozen TAEF2 autoencoder alone.

    ulic bench --out results/bench/stages.json [--sizes 256x256 768x512 2048x2048 4096x4096] [--runs 3]

Each size runs in its own child process (so its peak RSS, VmHWM, is its own): the test image
(the Kodak/bundled example resized with Lanczos) is encoded at --bpp and decoded with the
model's default decoder --runs times after one warm-up; the JSON holds the median seconds of
every stage (read, VAE encode, analysis, rate search, entropy coding, entropy decoding,
synthesis, DRM, each diffusion step, pixel decoding, PNG write), the TAEF2 encoder and decoder
alone on the same padded image, and the ratios. A time-vs-pixels plot is written beside it
when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ulic.errors import UlicError
from ulic.tools.common import own_peak_rss_mb, parse_size

DEFAULT_SIZES = ("256x256", "768x512", "2048x2048", "4096x4096")


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def _vae_alone(image: Any, runs: int) -> dict[str, float]:
    """The frozen TAEF2 encoder and decoder on the padded image, as the pipeline calls them."""
    import torch

    from ulic import api
    from ulic.model_store import load_model
    from ulic.vae.weights import load_vae

    model, vae = load_model(), load_vae()
    enc, dec = [], []
    for _ in range(runs):
        t = time.perf_counter()
        latent = api.encode_latent(image, model)
        enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        with torch.inference_mode():
            vae.decode(latent)
        dec.append(time.perf_counter() - t)
    return {"vae_encode_alone": statistics.median(enc), "vae_decode_alone": statistics.median(dec)}


def _entropy_coding(data: bytes, q_byte: int, runs: int) -> float:
    """Median seconds of the entropy coder alone (one compress_latents at the chosen q byte)."""
    from ulic import api
    from ulic.imageio import load_image
    from ulic.model_store import load_model

    model = load_model()
    y, z = model.codec.analyse(api.encode_latent(load_image(data), model))
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.codec.compress_latents(y, z, q_byte)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(size: tuple[int, int], runs: int, bpp: float, source: Path) -> dict[str, Any]:
    """One size, in this process: median stage times, the VAE alone, and this process's peak RSS."""
    from PIL import Image

    from ulic import api
    from ulic.imageio import load_image

    img = Image.open(source).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    png = io.BytesIO()
    img.save(png, "PNG")
    data = png.getvalue()
    api.decode(api.encode(data, bpp=bpp).data)  # warm-up: weights, kernels, allocator
    enc, dec = [], []
    for _ in range(runs):
        r = api.encode(data, bpp=bpp)
        enc.append(r.seconds)
        d = api.decode(r.data)
        t = time.perf_counter()
        api.to_pil(d.image).save(io.BytesIO(), "PNG")
        dec.append({**d.seconds, "png_write": time.perf_counter() - t})
    out: dict[str, Any] = {
        "size": f"{size[0]}x{size[1]}",
        "pixels": size[0] * size[1],
        "bytes": len(r.data),
        "bpp": r.bpp,
        "encode": {**_median(enc), "entropy_coding": _entropy_coding(data, r.quality, runs)},
        "decode": _median(dec),
        **_vae_alone(load_image(data), runs),
    }
    out["encode_over_vae"] = out["encode"]["total"] / out["vae_encode_alone"]
    out["decode_over_vae"] = out["decode"]["total"] / out["vae_decode_alone"]
    out["peak_rss_mb"] = own_peak_rss_mb()
    return out


def _child(size: str, runs: int, bpp: float, source: Path, threads: int | None) -> dict[str, Any]:
    """`measure` in a fresh process (its own peak memory and allocator state)."""
    cmd = [
        sys.executable,
        "-m",
        "ulic.tools.bench_stages",
        "--child",
        size,
        "--runs",
        str(runs),
        "--bpp",
        str(bpp),
        "--image",
        str(source),
    ] + (["--threads", str(threads)] if threads else [])
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise UlicError(f"bench at {size} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Encode, decode and the VAE alone: seconds against pixels (log-log)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    px = [r["pixels"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, ys in (
        ("encode", [r["encode"]["total"] for r in rows]),
        ("decode", [r["decode"]["total"] for r in rows]),
        ("TAEF2 encoder alone", [r["vae_encode_alone"] for r in rows]),
        ("TAEF2 decoder alone", [r["vae_decode_alone"] for r in rows]),
    ):
        ax.loglog(px, ys, "o-" if "alone" not in label else "s--", label=label)
    ax.set_xlabel("pixels")
    ax.set_ylabel("seconds (median)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="ulic bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(ap)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--out", type=Path, default=Path("results/bench/stages.json"))
    ap.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="WIDTHxHEIGHT ...")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per size after one warm-up (median)")
    ap.add_argument("--bpp", type=float, default=0.03)
    ap.add_argument("--image", type=Path, default=None, help="source photo (default: kodim23 or the bundled example)")


def run(args: argparse.Namespace, threads: int | None = None) -> int:
    from ulic.atomic import write_text_atomic
    from ulic.cli import default_example

    source = args.image or default_example()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        parse_size(size)
        rows.append(_child(size, args.runs, args.bpp, source, threads))
        print(
            json.dumps({k: rows[-1][k] for k in ("size", "bpp", "encode_over_vae", "decode_over_vae", "peak_rss_mb")}),
            flush=True,
        )
    import torch

    doc = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "torch": torch.__version__,
        "threads": threads or torch.get_num_threads(),
        "runs": args.runs,
        "image": source.name,
        "sizes": rows,
    }
    write_text_atomic(args.out, json.dumps(doc, indent=1) + "\n")
    plot(rows, args.out.with_suffix(".png"))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(measure(parse_size(args.child), args.runs, args.bpp, args.image)))
        return 0
    return run(args, args.threads)


if __name__ == "__main__":
    sys.exit(main())
