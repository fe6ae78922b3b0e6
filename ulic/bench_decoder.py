"""Decode-time benchmark per stage: entropy decoding + synthesis, DRM, each diffusion step,
VAE decoding, for the `fast` and `diffusion` decoders on one image.

    python -m ulic.bench_decoder --image kodim23.png --out results/kodak/decode_times.json
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

from ulic import api, bitstream
from ulic.codec.store import load_model
from ulic.diffusion.decode import seed_from_bytes
from ulic.diffusion.schedule import DDIM, alphas_cumprod, ddim_timesteps, start_latent
from ulic.diffusion.store import load_decoder
from ulic.weights import load_vae


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


@torch.no_grad()
def stage_times(data: bytes, steps: int, repeats: int = 3) -> dict:
    model = load_model()
    dec, _ = load_decoder(str(model.folder))
    vae = load_vae()
    c = bitstream.parse(data, model.fingerprint)
    hp, wp = -(-c.height // 128) * 128, -(-c.width // 128) * 128
    t_entropy, z_c = _best(lambda: model.codec.decompress(c.sections[0], (hp // 8, wp // 8), c.quality), repeats)
    q = torch.tensor([c.quality / 255.0])
    t_drm, (coarse, spatial, semantic) = _best(lambda: dec.drm(z_c, q), repeats)
    t0 = int(dec.t_start[c.quality])
    g = torch.Generator().manual_seed(seed_from_bytes(data))
    x = start_latent(z_c, torch.randn(z_c.shape, generator=g), alphas_cumprod()[t0].reshape(1))
    ts = ddim_timesteps(t0, steps)
    ddim = DDIM()
    per_step = []
    for i, t in enumerate(ts):
        tt = torch.full((1,), t)
        dt, x0 = _best(lambda: dec.denoiser(x, tt, coarse, spatial, semantic), repeats)
        per_step.append(dt)
        x = ddim.step(x, x0, t, ts[i + 1] if i + 1 < len(ts) else -1)
    lat = x[:, :, : -(-c.height // 8), : -(-c.width // 8)]
    t_vae, _ = _best(lambda: vae.decode(lat), repeats)
    fast = t_entropy + t_drm + t_vae
    diff = fast + sum(per_step)
    return {"size": f"{c.width}x{c.height}", "t_start": t0, "timesteps": ts,
            "entropy_decoding_and_synthesis_s": t_entropy, "drm_s": t_drm,
            "diffusion_step_s": per_step, "vae_decode_s": t_vae,
            "fast_total_s": fast, "diffusion_total_s": diff,
            "fast_over_vae": fast / t_vae, "diffusion_over_vae": diff / t_vae}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--image", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--bpp", type=float, default=0.03)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args(argv)
    data = api.encode(args.image, bpp=args.bpp).data
    doc = {"image": args.image.name, "bpp": 8 * len(data) / (api.load_image(args.image).shape[2] *
                                                              api.load_image(args.image).shape[3]),
           "machine": f"{platform.machine()} {os.cpu_count()} cpus", "torch_threads": torch.get_num_threads(),
           "timing": "best of 3 per stage", **stage_times(data, args.steps)}
    a, b = api.decode(data, decoder="diffusion").image, api.decode(data, decoder="diffusion").image
    doc["diffusion_decode_twice_identical"] = bool(torch.equal(a, b))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
