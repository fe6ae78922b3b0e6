"""Cache pixel crops and their TAEF2 latents for pixel-space (stage 3) training, in one file.

Each training photo gives a few random square crops at random scales (1, 3/4 or 1/2 of the
photo, as far as the photo is large enough), each flipped at random, and the TAEF2 latent of
exactly that crop, so no augmentation happens later that the latent would not follow:

    pixels  (N, 3, P, P) uint8        the crop, RGB
    latents (N, 32, P/8, P/8) float16 TAEF2 encoder output of the crop
    val_pixels / val_latents           centre crops of the held-out photos (validation only)

Held out: the first n BSDS500 `val_` photos in sorted order, the same photos stage 1 and 2
keep for validation (`ulic.train.train_codec.split`). Evaluation sets are never read.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from safetensors.torch import save_file

from ulic.atomic import atomic_path
from ulic.imageio import list_images
from ulic.limits import PAD
from ulic.vae.weights import load_vae

SCALES = (1.0, 0.75, 0.5)
ENCODE_BATCH = 32


def held_out(paths: list[Path], n_val: int) -> set[Path]:
    """The first n_val BSDS500 'val_' photos (sorted by name): stage 1's validation photos."""
    return set(sorted((p for p in paths if p.name.startswith("val_")), key=lambda p: p.name)[:n_val])


def random_crops(img: Image.Image, size: int, n: int, rng: random.Random) -> list[np.ndarray]:
    """n random (size x size) crops at a random scale each, randomly flipped; (size, size, 3) uint8."""
    out = []
    for _ in range(n):
        fits = [s for s in SCALES if min(img.size) * s >= size]
        if not fits:
            break
        s = rng.choice(fits)
        im = img if s == 1.0 else img.resize((round(img.width * s), round(img.height * s)), Image.Resampling.LANCZOS)
        x0, y0 = rng.randrange(im.width - size + 1), rng.randrange(im.height - size + 1)
        crop = np.asarray(im.crop((x0, y0, x0 + size, y0 + size)))
        out.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    return out


def centre_crop(img: Image.Image, size: int) -> np.ndarray:
    x0, y0 = (img.width - size) // 2, (img.height - size) // 2
    return np.asarray(img.crop((x0, y0, x0 + size, y0 + size)))


@torch.inference_mode()
def encode(crops: list[np.ndarray], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """crops (size, size, 3) uint8 -> pixels (N, 3, P, P) uint8, latents (N, 32, P/8, P/8) float16
    (the TAEF2 encoder runs on `device`, default the CPU; both results are on the CPU)."""
    enc = load_vae().encoder.to(device or torch.device("cpu"))
    pixels = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    lat = [
        enc(pixels[i : i + ENCODE_BATCH].to(device or "cpu").float() / 255).cpu()
        for i in range(0, len(pixels), ENCODE_BATCH)
    ]
    return pixels, torch.cat(lat).half().contiguous()  # the encoder computes channels-last


def build(roots: list[Path], out: Path, size: int, per_image: int, n_val: int, seed: int) -> dict[str, int]:
    """Write the crop cache; returns counts."""
    if size % PAD:
        raise ValueError(f"crop size must be a multiple of {PAD} (the codec's downsampling)")
    rng = random.Random(seed)
    paths = [p for r in roots for p in list_images(r, recursive=True)]
    val = held_out(paths, n_val)
    train_crops, val_crops = [], []
    t0 = time.time()
    for i, path in enumerate(paths):
        img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        if path in val:
            val_crops.append(centre_crop(img, size))
        else:
            train_crops += random_crops(img, size, per_image, rng)
        if i % 100 == 0:
            print(f"[{i + 1}/{len(paths)}] {time.time() - t0:.0f}s", flush=True)
    pixels, latents = encode(train_crops)
    val_pixels, val_latents = encode(val_crops)
    with atomic_path(out) as tmp:
        save_file(
            {"pixels": pixels, "latents": latents, "val_pixels": val_pixels, "val_latents": val_latents},
            str(tmp),
            metadata={
                "roots": ";".join(str(r) for r in roots),
                "size": str(size),
                "held_out": ";".join(sorted(p.name for p in val)),
            },
        )
    return {"train": len(pixels), "val": len(val_pixels), "images": len(paths)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="folders of training photos")
    ap.add_argument("--out", type=Path, required=True, help="output .safetensors")
    ap.add_argument("--size", type=int, default=128, help="crop side in pixels (multiple of 128)")
    ap.add_argument("--per-image", type=int, default=3)
    ap.add_argument("--n-val", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    counts = build(args.data, args.out, args.size, args.per_image, args.n_val, args.seed)
    print(
        f"wrote {counts['train']} training and {counts['val']} validation crops "
        f"from {counts['images']} photos to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
