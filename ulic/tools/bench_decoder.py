"""Decode-time benchmark per stage (entropy decoding + synthesis, refinement, pixel decoding)
for the `mse`, `fast` and `diffusion` decoders on one image, through the public decoder, and
the ratio to the frozen TAEF2 decoder alone.

    python -m ulic.tools.bench_decoder --image kodim23.png --out results/kodak/decode_times.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from ulic import api
from ulic.model_store import load_model
from ulic.vae.weights import load_vae


def _best_decode(data: bytes, decoder: str, steps: int | None, repeats: int) -> dict[str, float]:
    """Per-stage seconds of the public decoder (api.decode), the run with the best total."""
    model = load_model()
    runs = [api.decode(data, model, decoder=decoder, steps=steps).seconds for _ in range(repeats)]
    return min(runs, key=lambda s: s["total"])


@torch.no_grad()
def stage_times(data: bytes, steps: int, repeats: int = 3) -> dict:
    """Decode times per stage for the three decoders, and the frozen TAEF2 decoder alone on
    the same latent (the reference every ratio is taken to)."""
    fast = _best_decode(data, "fast", None, repeats)
    diff = _best_decode(data, "diffusion", steps, repeats)
    mse = _best_decode(data, "mse", None, repeats)
    lat = api.decode(data, decoder="mse").z_c
    vae = load_vae()
    t_vae = min(_timed(lambda: vae.decode(lat)) for _ in range(repeats))
    return {
        "fast": fast,
        "diffusion": diff,
        "mse": mse,
        "vae_decode_alone_s": t_vae,
        "diffusion_step_s": (diff["refine"] - fast["refine"]) / steps,
        "fast_total_s": fast["total"],
        "diffusion_total_s": diff["total"],
        "fast_over_vae": fast["total"] / t_vae,
        "diffusion_over_vae": diff["total"] / t_vae,
    }


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--image", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--bpp", type=float, default=0.03)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args(argv)
    data = api.encode(args.image, bpp=args.bpp).data
    doc = {
        "image": args.image.name,
        "bpp": 8 * len(data) / (api.load_image(args.image).shape[2] * api.load_image(args.image).shape[3]),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "torch_threads": torch.get_num_threads(),
        "timing": "best of 3 decodes",
        **stage_times(data, args.steps),
    }
    a, b = api.decode(data, decoder="diffusion").image, api.decode(data, decoder="diffusion").image
    doc["diffusion_decode_twice_identical"] = bool(torch.equal(a, b))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
