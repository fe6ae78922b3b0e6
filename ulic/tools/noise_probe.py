"""How much the diffusion decoder's start noise changes its output: each photo is encoded once
and its file decoded with several noise seeds instead of the file's own, JSON out.

    python -m ulic.tools.noise_probe --data cache/val --quality 50 --seeds 16 \
        --out results/ablation/noise_probe.json

Per photo: the spread over seeds of the refined latent (largest absolute difference from seed
0's, against the latent's own standard deviation), of PSNR and of LPIPS-Alex. A decoder whose
outputs do not depend on the noise is a deterministic refiner, whatever its sampler.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from ulic.tools.common import emit_json


@torch.no_grad()
def probe(path: Path, quality: float, seeds: int, realism: float | None) -> dict:
    """One photo's spread over `seeds` start-noise seeds, through the default diffusion decoder."""
    from ulic import api
    from ulic.diffusion.decode import seed_from_bytes
    from ulic.evaluation.lpips import lpips
    from ulic.imageio import load_image
    from ulic.model_store import load_model
    from ulic.pixels import psnr
    from ulic.timing import StageTimer
    from ulic.vae.taef2 import SCALE

    model = load_model()
    x = load_image(path)
    data = api.encode(path, quality=quality, model=model).data
    p = api._entropy_decode(data, model, StageTimer())
    h, w = p.header.height, p.header.width
    own = seed_from_bytes(data)
    latents, scores, psnrs = [], [], []
    for seed in [own, *range(seeds - 1)]:
        latent, _, _, pixel = api._run_decoder(p.z_c, p.header.quality, model, "diffusion", None, [seed], realism)
        latent = latent[:, :, : -(-h // SCALE), : -(-w // SCALE)]  # as `api.decode` crops it
        img = api._pixels(latent, pixel)[:, :, :h, :w]
        latents.append(latent)
        scores.append(lpips(img, x))
        psnrs.append(psnr(img, x))
    spread = max(float((v - latents[0]).abs().max()) for v in latents[1:])
    return {
        "image": path.name,
        "bpp": round(8 * len(data) / (h * w), 5),
        "latent_max_abs_diff_over_std": spread / float(latents[0].std()),
        "lpips_alex": {
            "mean": statistics.mean(scores),
            "stdev": statistics.pstdev(scores),
            "min": min(scores),
            "max": max(scores),
        },
        "psnr": {"mean": statistics.mean(psnrs), "stdev": statistics.pstdev(psnrs)},
    }


def main(argv: list[str] | None = None) -> int:
    from ulic.imageio import list_images

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a folder of photos")
    ap.add_argument("--quality", type=float, default=50.0)
    ap.add_argument("--seeds", type=int, default=16, help="seeds per photo, the file's own first")
    ap.add_argument("--realism", type=float, default=None, help="default: the model's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = [probe(p, a.quality, a.seeds, a.realism) for p in list_images(a.data)]
    emit_json({"quality": a.quality, "seeds": a.seeds, "realism": a.realism, "photos": rows}, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
