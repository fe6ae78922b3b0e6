"""A compact, transportable subset of the stage-3 crop cache, for a training burst elsewhere.

The crop cache (`ulic.train.pixel_crops`) holds 8,472 crops with their latents in 558 MB; a lent
GPU machine receives at most 64 MiB with the repository. A pack keeps a seeded subset of the
training crops and all validation crops as JPEG (quality 95, 4:4:4 chroma: median 41 dB PSNR
against the cached crops, far above the 18-24 dB the codec reaches at these rates) and no
latents; `unpack` decodes them and recomputes the TAEF2 latents of exactly the decoded pixels,
on the machine that trains, into the cache format `ulic.train.train_realism --crops` reads:

    jpeg (bytes,) uint8, offsets (N + 1,) int64          the training crops, concatenated
    val_jpeg, val_offsets                                the validation crops
    concepts, val_concepts (N, P/8, P/8) uint8           when the cache has concept maps, as they are
    metadata: size, quality, source crop count, seed (and the maps' vocabulary_id)

    python -m ulic.train.crop_pack pack --cache cache/pixel_crops128c.safetensors \\
        --out .gpu/crops.safetensors --n 1400
    python -m ulic.train.crop_pack unpack --pack .gpu/crops.safetensors --out /tmp/crops.safetensors
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ulic.atomic import atomic_path
from ulic.runtime import DEVICES, resolve_device
from ulic.train.pixel_crops import encode

JPEG_QUALITY = 95


def _jpegs(pixels: torch.Tensor, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, P, P) uint8 -> concatenated JPEG bytes (B,) uint8 and offsets (N + 1,) int64."""
    blobs = []
    for p in pixels:
        buf = io.BytesIO()
        Image.fromarray(p.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=quality, subsampling=0)
        blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    data = np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)
    return torch.from_numpy(data.copy()), torch.from_numpy(offsets.astype(np.int64))


def _decode(data: torch.Tensor, offsets: torch.Tensor) -> list[np.ndarray]:
    """Inverse of `_jpegs`: a list of (P, P, 3) uint8 crops."""
    raw, off = data.numpy().tobytes(), offsets.tolist()
    return [np.asarray(Image.open(io.BytesIO(raw[a:b])).convert("RGB")) for a, b in zip(off[:-1], off[1:], strict=True)]


def pack(cache: Path, out: Path, n: int, seed: int = 0, quality: int = JPEG_QUALITY) -> dict[str, int]:
    """Write n seeded training crops and every validation crop of `cache` as a pack."""
    t = load_file(str(cache))
    total = len(t["pixels"])
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[: min(n, total)].sort().values
    jpeg, offsets = _jpegs(t["pixels"][idx], quality)
    val_jpeg, val_offsets = _jpegs(t["val_pixels"], quality)
    with safe_open(str(cache), "pt") as f:
        found = f.metadata() or {}
    meta = {"size": found.get("size", str(t["pixels"].shape[-1])), "quality": str(quality)}
    meta |= {"source_crops": str(total), "seed": str(seed)}
    packed = {"jpeg": jpeg, "offsets": offsets, "val_jpeg": val_jpeg, "val_offsets": val_offsets}
    if "concepts" in t:  # 256 bytes a crop: kept exact
        packed |= {"concepts": t["concepts"][idx].contiguous(), "val_concepts": t["val_concepts"]}
        meta["vocabulary_id"] = found["vocabulary_id"]
    with atomic_path(out) as tmp:
        save_file(packed, str(tmp), metadata=meta)
    return {"train": len(idx), "val": len(t["val_pixels"]), "bytes": out.stat().st_size}


def unpack(pack_path: Path, out: Path, device: torch.device | None = None) -> dict[str, int]:
    """Decode a pack and write the crop cache (pixels + TAEF2 latents computed here)."""
    t = load_file(str(pack_path))
    pixels, latents = encode(_decode(t["jpeg"], t["offsets"]), device)
    val_pixels, val_latents = encode(_decode(t["val_jpeg"], t["val_offsets"]), device)
    with safe_open(str(pack_path), "pt") as f:
        meta = dict(f.metadata() or {})
    cache = {"pixels": pixels, "latents": latents, "val_pixels": val_pixels, "val_latents": val_latents}
    cache |= {k: t[k] for k in ("concepts", "val_concepts") if k in t}
    with atomic_path(out) as tmp:
        save_file(cache, str(tmp), metadata={**meta, "unpacked_from": pack_path.name})
    return {"train": len(pixels), "val": len(val_pixels)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="crop cache -> pack")
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=1400, help="training crops kept (all validation crops are)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quality", type=int, default=JPEG_QUALITY)
    u = sub.add_parser("unpack", help="pack -> crop cache")
    u.add_argument("--pack", type=Path, required=True)
    u.add_argument("--out", type=Path, required=True)
    u.add_argument("--device", choices=DEVICES, default="auto", help="where the TAEF2 encoder runs")
    args = ap.parse_args(argv)
    src, what = (args.cache, "crop cache") if args.cmd == "pack" else (args.pack, "crop pack")
    if not src.is_file():
        print(f"error: {src}: no such file", file=sys.stderr)
        return 2
    try:
        if args.cmd == "pack":
            c = pack(args.cache, args.out, args.n, args.seed, args.quality)
            print(f"packed {c['train']} training and {c['val']} validation crops into {args.out} ({c['bytes']} bytes)")
        else:
            c = unpack(args.pack, args.out, resolve_device(args.device))
            print(f"unpacked {c['train']} training and {c['val']} validation crops into {args.out}")
    except (OSError, ValueError, KeyError, SafetensorError) as e:  # PIL's decode errors are OSErrors
        print(f"error: {src}: not a readable {what} ({e})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
