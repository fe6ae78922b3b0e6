"""Large-image benchmark: peak memory and time of `ulic compress`/`decompress` by image size,
and tiled vs one-pass VAE on an image where both fit.

    python -m ulic.tools.bench_large --image kodim23.png --out results/large.json [--sizes 768x512 ...]

Test images are a photo resized (Lanczos) to each size. Each command runs in a child process
whose own peak RSS (VmHWM) is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

from ulic.tools.bench_codec import peak_rss_mb
from ulic.tools.common import parse_size


def tiled_vs_one_pass(image: Path, size: tuple[int, int]) -> dict:
    """Encode and decode one image with and without VAE tiling; compare the decoded pixels."""
    from ulic import api
    from ulic.codec.model import LATENT_PER_Z
    from ulic.limits import padded
    from ulic.model_store import load_model
    from ulic.vae.tiling import TILE, decode_tiled, encode_tiled
    from ulic.vae.weights import load_vae

    vae, model = load_vae(), load_model()
    x = api.load_image(Image.open(image).convert("RGB").resize(size, Image.Resampling.LANCZOS))
    with torch.inference_mode():
        lat_t, lat_1 = encode_tiled(vae.encoder, x), vae.encoder(x)
        q = api.quality_to_byte(50)
        rec = {}
        for name, lat in (("tiled", lat_t), ("one_pass", lat_1)):
            h, w = lat.shape[2:]
            hp, wp = padded(h, w, LATENT_PER_Z)
            lp = torch.nn.functional.pad(lat, (0, wp - w, 0, hp - h), mode="replicate")
            data, _ = model.codec.compress(lp, q)
            z_c = model.codec.decompress(data, (hp, wp), q)[:, :, :h, :w]
            dec = decode_tiled if name == "tiled" else (lambda d, z, tile=None: d(z))
            rec[name] = (dec(vae.decoder, z_c).clamp(0, 1) * 255).round()
    diff = (rec["tiled"] - rec["one_pass"]).abs()
    ref = (x * 255).round()
    psnr = {k: float(10 * torch.log10(255**2 / (v - ref).pow(2).mean())) for k, v in rec.items()}
    # seam region: the rows and columns within 8 px of interior tile borders
    seam = torch.zeros_like(diff[0, 0], dtype=torch.bool)
    for b in range(TILE, size[1], TILE):
        seam[b - 8 : b + 8, :] = True
    for b in range(TILE, size[0], TILE):
        seam[:, b - 8 : b + 8] = True
    return {
        "size": f"{size[0]}x{size[1]}",
        "tile": TILE,
        "latents_identical": bool(torch.equal(lat_t, lat_1)),
        "max_latent_diff": float((lat_t - lat_1).abs().max()),
        "psnr_tiled": psnr["tiled"],
        "psnr_one_pass": psnr["one_pass"],
        "max_pixel_diff": float(diff.max()),
        "pixels_differing": int((diff > 0).any(1).sum()),
        "max_pixel_diff_at_seams": float(diff[0, :, seam].max()) if seam.any() else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--image", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sizes", nargs="+", default=["768x512", "2048x2048", "4096x4096"])
    ap.add_argument("--quality", type=float, default=50)
    ap.add_argument(
        "--optimize",
        type=int,
        default=0,
        help="encode-time optimisation steps of the compress runs (default 0: its time "
        "grows with the image; its memory is bounded by the decoder's tiles)",
    )
    ap.add_argument("--compare-size", default="1536x1024", help="size for tiled vs one pass")
    args = ap.parse_args(argv)
    src = Image.open(args.image).convert("RGB")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for s in args.sizes:
            w, h = parse_size(s)
            p = Path(tmp) / f"{s}.png"
            src.resize((w, h), Image.Resampling.LANCZOS).save(p)
            enc_mb, enc_s = peak_rss_mb(
                [
                    "compress",
                    str(p),
                    "-o",
                    f"{tmp}/{s}.ulic",
                    "--quality",
                    str(args.quality),
                    "--optimize",
                    str(args.optimize),
                ]
            )
            dec_mb, dec_s = peak_rss_mb(["decompress", f"{tmp}/{s}.ulic", "-o", f"{tmp}/{s}.out.png"])
            n = Path(f"{tmp}/{s}.ulic").stat().st_size
            rows.append(
                {
                    "size": s,
                    "bytes": n,
                    "bpp": 8 * n / (w * h),
                    "compress_peak_rss_mb": round(enc_mb, 1),
                    "compress_s": round(enc_s, 2),
                    "decompress_peak_rss_mb": round(dec_mb, 1),
                    "decompress_s": round(dec_s, 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    doc = {
        "image": args.image.name,
        "threads": torch.get_num_threads(),
        "optimize_steps": args.optimize,
        "sizes": rows,
        "tiled_vs_one_pass": tiled_vs_one_pass(args.image, parse_size(args.compare_size)),
    }
    print(json.dumps(doc["tiled_vs_one_pass"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
