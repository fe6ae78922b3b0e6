"""Cache TAEF2 latents of a training folder once, at several scales, as one safetensors file."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from safetensors.torch import save_file

from ulic.atomic import atomic_path
from ulic.imageio import list_images
from ulic.vae.taef2 import SCALE
from ulic.vae.weights import load_vae


def scaled_versions(img: Image.Image, min_side: int) -> list[Image.Image]:
    """The image at scale 1, 1/2, 1/4 ... while its short side stays >= min_side."""
    out = []
    while min(img.size) >= min_side:
        w, h = img.size
        out.append(img.crop((0, 0, w - w % SCALE, h - h % SCALE)))
        img = img.resize((w // 2, h // 2), Image.Resampling.LANCZOS)
    return out


def cache_latents(root: Path, out: Path, min_side: int = 256) -> int:
    """Encode every image (and its downscaled copies) to a float16 latent; returns the count."""
    vae = load_vae()
    paths = list_images(root, recursive=True)
    tensors: dict[str, torch.Tensor] = {}
    t0 = time.time()
    for i, path in enumerate(paths):
        img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        for s, version in enumerate(scaled_versions(img, min_side)):
            x = torch.from_numpy(np.array(version)).permute(2, 0, 1)[None].float() / 255
            with torch.inference_mode():
                latent = vae.encode(x)[0]  # (32, h/8, w/8)
            key = f"{path.relative_to(root).as_posix()}@{s}"
            tensors[key] = latent.half().contiguous()
        if i % 20 == 0:
            print(f"[{i + 1}/{len(paths)}] {time.time() - t0:.0f}s {path.name}", flush=True)
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={"root": str(root), "min_side": str(min_side)})
    return len(tensors)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True, help="folder of training images")
    ap.add_argument("--out", type=Path, required=True, help="output .safetensors")
    ap.add_argument("--min-side", type=int, default=256)
    args = ap.parse_args(argv)
    n = cache_latents(args.data, args.out, args.min_side)
    print(f"wrote {n} latents to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
