"""Cache pixel crops and their TAEF2 latents for pixel-space (stage 3) training, in one file.

Each training photo gives a few random square crops at random scales (1, 3/4 or 1/2 of the
photo, as far as the photo is large enough), each flipped at random, and the TAEF2 latent of
exactly that crop, so no augmentation happens later that the latent would not follow:

    pixels  (N, 3, P, P) uint8        the crop, RGB
    latents (N, 32, P/8, P/8) float16 TAEF2 encoder output of the crop
    val_pixels / val_latents           centre crops of the held-out photos (validation only)
    concepts / val_concepts (N, P/8, P/8) uint8   with --concepts: the concept id (of the model's
                                       vocabulary) of the photo's region under each latent position,
                                       as decoding maps an SRC section's ids (`concept_map`)

Held out: the first n BSDS500 `val_` photos in sorted order, the same photos stage 1 and 2
keep for validation (`ulic.train.train_codec.split`). Evaluation sets are never read.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from safetensors.torch import save_file

from ulic.atomic import atomic_path
from ulic.imageio import list_images
from ulic.limits import PAD
from ulic.semantics.encoder import GRID, region_embeddings, region_index
from ulic.vae.taef2 import SCALE
from ulic.vae.weights import load_vae

SCALES = (1.0, 0.75, 0.5)
ENCODE_BATCH = 32


def held_out(paths: list[Path], n_val: int) -> set[Path]:
    """The first n_val BSDS500 'val_' photos (sorted by name): stage 1's validation photos."""
    return set(sorted((p for p in paths if p.name.startswith("val_")), key=lambda p: p.name)[:n_val])


@dataclass(frozen=True)
class Placement:
    """Where a crop came from: the photo scaled by `scale`, the crop's corner (x0, y0) there."""

    scale: float
    x0: int
    y0: int
    flipped: bool


def random_crops(img: Image.Image, size: int, n: int, rng: random.Random) -> list[tuple[np.ndarray, Placement]]:
    """n random (size x size) crops at a random scale each, randomly flipped; (size, size, 3) uint8
    and where each came from."""
    out = []
    for _ in range(n):
        fits = [s for s in SCALES if min(img.size) * s >= size]
        if not fits:
            break
        s = rng.choice(fits)
        im = img if s == 1.0 else img.resize((round(img.width * s), round(img.height * s)), Image.Resampling.LANCZOS)
        x0, y0 = rng.randrange(im.width - size + 1), rng.randrange(im.height - size + 1)
        crop = np.asarray(im.crop((x0, y0, x0 + size, y0 + size)))
        flip = rng.random() < 0.5
        out.append((crop[:, ::-1] if flip else crop, Placement(im.width / img.width, x0, y0, flip)))
    return out


def centre_crop(img: Image.Image, size: int) -> tuple[np.ndarray, Placement]:
    x0, y0 = (img.width - size) // 2, (img.height - size) // 2
    return np.asarray(img.crop((x0, y0, x0 + size, y0 + size))), Placement(1.0, x0, y0, False)


def crop_concepts(region_ids: np.ndarray, photo: tuple[int, int], where: Placement, size: int) -> np.ndarray:
    """The photo's region concept ids (GRID * GRID,) -> the id under each latent position of a
    crop (size/8, size/8) uint8: each position's centre mapped back to the photo (H, W)."""
    centres = (torch.arange(size // SCALE) * SCALE + SCALE / 2).double()
    ys = region_index((where.y0 + centres) / where.scale, photo[0])
    xs = region_index((where.x0 + centres) / where.scale, photo[1])
    m = region_ids[(ys[:, None] * GRID + xs[None, :]).numpy()]
    return np.ascontiguousarray(m[:, ::-1] if where.flipped else m).astype(np.uint8)


def photo_concepts(img: Image.Image, sem) -> np.ndarray:
    """The concept ids (GRID * GRID,) of a photo's regions under vocabulary `sem`."""
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    return sem.assign(region_embeddings(x))


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


def build(roots: list[Path], out: Path, size: int, per_image: int, n_val: int, seed: int, sem=None) -> dict[str, int]:
    """Write the crop cache (with each crop's concept map when given a vocabulary `sem`);
    returns counts."""
    if size % PAD:
        raise ValueError(f"crop size must be a multiple of {PAD} (the codec's downsampling)")
    rng = random.Random(seed)
    paths = [p for r in roots for p in list_images(r, recursive=True)]
    val = held_out(paths, n_val)
    train_crops: list[np.ndarray] = []
    val_crops: list[np.ndarray] = []
    train_maps: list[np.ndarray] = []
    val_maps: list[np.ndarray] = []
    t0 = time.time()
    for i, path in enumerate(paths):
        img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        crops = [centre_crop(img, size)] if path in val else random_crops(img, size, per_image, rng)
        (val_crops if path in val else train_crops).extend(c for c, _ in crops)
        if sem is not None and crops:
            ids = photo_concepts(img, sem)
            maps = [crop_concepts(ids, (img.height, img.width), where, size) for _, where in crops]
            (val_maps if path in val else train_maps).extend(maps)
        if i % 100 == 0:
            print(f"[{i + 1}/{len(paths)}] {time.time() - t0:.0f}s", flush=True)
    pixels, latents = encode(train_crops)
    val_pixels, val_latents = encode(val_crops)
    tensors = {"pixels": pixels, "latents": latents, "val_pixels": val_pixels, "val_latents": val_latents}
    meta = {
        "roots": ";".join(str(r) for r in roots),
        "size": str(size),
        "held_out": ";".join(sorted(p.name for p in val)),
    }
    if sem is not None:
        tensors |= {
            "concepts": torch.from_numpy(np.stack(train_maps)),
            "val_concepts": torch.from_numpy(np.stack(val_maps)),
        }
        meta["vocabulary_id"] = str(sem.vocabulary_id)
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return {"train": len(pixels), "val": len(val_pixels), "images": len(paths)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="folders of training photos")
    ap.add_argument("--out", type=Path, required=True, help="output .safetensors")
    ap.add_argument("--size", type=int, default=128, help="crop side in pixels (multiple of 128)")
    ap.add_argument("--per-image", type=int, default=3)
    ap.add_argument("--n-val", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--concepts",
        action="store_true",
        help="also store each crop's concept map under the model's vocabulary (for a decoder that reads SRC)",
    )
    ap.add_argument("--model", type=str, default=None, help="model folder of the vocabulary (default: shipped)")
    args = ap.parse_args(argv)
    sem = None
    if args.concepts:
        from ulic.model_store import load_model, load_semantics

        sem = load_semantics(str(load_model(args.model).folder))
        if sem is None:
            raise SystemExit("--concepts: the model has no concept vocabulary (semantics.json)")
    counts = build(args.data, args.out, args.size, args.per_image, args.n_val, args.seed, sem)
    print(
        f"wrote {counts['train']} training and {counts['val']} validation crops "
        f"from {counts['images']} photos to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
