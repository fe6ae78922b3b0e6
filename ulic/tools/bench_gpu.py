"""Decode latency and throughput on a device (a GPU when one is lent), and how far its images
are from the CPU's.

    python -m ulic.tools.bench_gpu --device cuda --out results/bench/gpu.json [--images 24] [--batch 8]

N test files (crops and flips of the bundled example, resized to --size, encoded at --bpp on
the device) are decoded one at a time (latency: median seconds per image, the device
synchronised) and in batches through `ulic.api.decode_batch` (throughput: images per second);
one file is also decoded on the CPU and compared (max |difference| in 8-bit levels and the share
of identical values). Works with --device cpu too (the test suite runs it so).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps

from ulic.tools.common import emit_json, parse_size


def sample_files(n: int, size: tuple[int, int], bpp: float, device: str) -> list[bytes]:
    """n .ulic files of size (width, height): shifted crops of the bundled example, every
    second one mirrored, encoded on `device`."""
    from ulic import api

    src = Image.open(Path(api.__file__).parent / "assets" / "example.png").convert("RGB")
    base = src.resize((size[0] + 32, size[1] + 32), Image.Resampling.LANCZOS)
    files = []
    for i in range(n):
        x, y = (7 * i) % 32, (13 * i) % 32
        im = base.crop((x, y, x + size[0], y + size[1]))
        im = ImageOps.mirror(im) if i % 2 else im
        buf = io.BytesIO()
        im.save(buf, "PNG")
        files.append(api.encode(buf.getvalue(), bpp=bpp, device=device).data)
    return files


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(files: list[bytes], device: str, batch: int) -> dict[str, Any]:
    from ulic import api

    api.decode(files[0], device=device)  # warm-up: weights to the device, kernels
    lat = []
    for data in files:
        _sync(device)
        t = time.perf_counter()
        api.decode(data, device=device)
        _sync(device)
        lat.append(time.perf_counter() - t)
    api.decode_batch(files[:batch], device=device, batch=batch)  # warm-up at the batch shape
    _sync(device)
    t = time.perf_counter()
    api.decode_batch(files, device=device, batch=batch)
    _sync(device)
    seconds = time.perf_counter() - t
    here, cpu = api.decode(files[0], device=device).image, api.decode(files[0], device="cpu").image
    diff = ((here * 255).round() - (cpu * 255).round()).abs()
    return {
        "decode_latency_s_median": statistics.median(lat),
        "decode_latency_s_min": min(lat),
        "batched_images_per_s": len(files) / seconds,
        "vs_cpu_max_levels": float(diff.max()),
        "vs_cpu_identical_share": float((diff == 0).float().mean()),
    }


def main(argv: list[str] | None = None) -> int:
    from ulic.runtime import resolve_device

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=parse_size, default=(768, 512), help="WIDTHxHEIGHT (default 768x512)")
    ap.add_argument("--bpp", type=float, default=0.03)
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default: print only)")
    args = ap.parse_args(argv)
    dev = resolve_device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    files = sample_files(args.images, args.size, args.bpp, str(dev))
    doc = {
        "device": str(dev),
        "device_name": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "size": f"{args.size[0]}x{args.size[1]}",
        "images": args.images,
        "batch": args.batch,
        "mean_bytes": statistics.mean(len(f) for f in files),
        **measure(files, str(dev), args.batch),
    }
    emit_json(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
