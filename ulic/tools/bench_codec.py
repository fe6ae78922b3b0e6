"""Stage-1 benchmark on a folder of images (Kodak): real bytes, PSNR, MS-SSIM, times, memory.

    python -m ulic.tools.bench_codec --data DIR --out results.json [--qualities 0 20 ...] [--target-bpp 0.03]
    python -m ulic.tools.bench_codec --data DIR --out vae.json --vae-only   # TAEF2 alone: the quality ceiling

Writes one JSON document: per quality byte the mean real bpp, PSNR, MS-SSIM, encode/decode
seconds and the overhead of real bytes over the model's estimated bits; per-image rows; the
`--target-bpp` sweep (rate control, and the stage-1 PSNR of each file it makes); a
decode-determinism check across thread counts; and peak RSS of separate `ulic compress` /
`ulic decompress` processes on the first image.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ulic import api, bitstream
from ulic.atomic import write_text_atomic
from ulic.codec.optimize import FIDELITY_STEPS
from ulic.imageio import list_images, load_image
from ulic.limits import padded
from ulic.model_store import load_model
from ulic.vae.taef2 import SCALE


def _ms_ssim(a: torch.Tensor, b: torch.Tensor) -> float | None:
    try:
        from ulic.evaluation.metrics import ms_ssim
    except ImportError:
        return None
    return float(ms_ssim(a, b))


def peak_rss_mb(args: list[str]) -> tuple[float, float]:
    """Run `python -m ulic.cli ARGS` in a child; return (its own peak RSS in MB, seconds).
    The child reads its VmHWM: on Linux ru_maxrss survives fork + exec, so a child of a large
    benchmark process would report the parent's peak."""
    code = (
        "import sys; from ulic.cli import main; from ulic.tools.common import own_peak_rss_mb; "
        "rc = main(sys.argv[1:]); print(own_peak_rss_mb(), file=sys.stderr); sys.exit(rc)"
    )
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    return float(r.stderr.strip().splitlines()[-1]), time.perf_counter() - t


def thread_check(data: bytes) -> dict:
    """Decode with 1 and 2 threads: compare decoded latents (y_hat) and pixels."""
    model = load_model()
    captured = []
    hook = model.codec.g_s.register_forward_pre_hook(lambda m, a: captured.append(a[0].clone()))
    out = []
    old = torch.get_num_threads()
    for n in (1, 2):
        torch.set_num_threads(n)
        out.append((api.decode(data).image * 255).round())
    torch.set_num_threads(old)
    hook.remove()
    diff = (out[0] - out[1]).abs()
    return {
        "y_hat_identical": bool(torch.equal(captured[0], captured[1])),
        "pixels_identical": bool(torch.equal(out[0], out[1])),
        "max_pixel_diff": float(diff.max()),
        "pixels_differing": int((diff > 0).any(1).sum()),
    }


def vae_only(paths: list[Path]) -> dict:
    """PSNR and MS-SSIM of the frozen TAEF2 round trip (no compression): the ceiling of any
    latent codec built on it."""
    vae = api.load_vae()
    rows: list[dict[str, Any]] = []
    for path in paths:
        x = load_image(path)
        h, w = x.shape[2:]
        hp, wp = padded(h, w, SCALE)  # whole latents
        xp = torch.nn.functional.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
        with torch.inference_mode():
            r = vae.decode(vae.encode(xp))[:, :, :h, :w]
        rows.append({"image": path.name, "psnr": api.psnr(x, r), "ms_ssim": _ms_ssim(x, r)})
        print(f"{path.name} {rows[-1]['psnr']:.2f} dB", file=sys.stderr, flush=True)
    doc = {
        "name": "TAEF2 round trip (no compression)",
        "images": len(rows),
        "psnr": sum(r["psnr"] for r in rows) / len(rows),
        "ms_ssim": None,
    }
    if all(r["ms_ssim"] is not None for r in rows):
        doc["ms_ssim"] = sum(r["ms_ssim"] for r in rows) / len(rows)
    return {**doc, "rows": rows}


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--qualities", type=float, nargs="+", default=[0, 15, 30, 45, 60, 80, 100])
    ap.add_argument("--target-bpp", type=float, default=0.03)
    ap.add_argument(
        "--optimize",
        type=int,
        default=FIDELITY_STEPS,
        help="encode-time optimisation steps for the --target-bpp files (those files "
        "are also measured without it); the --qualities rows never use it",
    )
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images")
    ap.add_argument("--vae-only", action="store_true", help="only measure the TAEF2 round trip")
    return ap.parse_args(argv)


def quality_rows(path: Path, qualities: list[float], model) -> list[dict]:
    """One image at each quality: real bytes, the model's estimate, stage-1 PSNR, times."""
    x = load_image(path)
    h, w = x.shape[2:]
    t0 = time.perf_counter()
    y, z = model.codec.analyse(api.encode_latent(x, model))
    coder = api.LatentCoder(y, z, h, w, model)
    analysis_s = time.perf_counter() - t0
    rows = []
    for qual in qualities:
        qb = api.quality_to_byte(qual)
        t1 = time.perf_counter()
        data, bits = coder(qb)
        enc_s = analysis_s + time.perf_counter() - t1
        d = api.decode(data, model, decoder="mse")  # stage 1: z_c straight into the VAE
        rows.append(
            {
                "image": path.name,
                "quality": qual,
                "q_byte": qb,
                "bytes": len(data),
                "bpp": 8 * len(data) / (h * w),
                "est_bits": bits,
                "payload_bytes": len(bitstream.parse(data, model.fingerprint).sections[0]),
                "psnr": api.psnr(x, d.image),
                "ms_ssim": _ms_ssim(x, d.image),
                "encode_s": enc_s,
                "decode_s": d.seconds["total"],
            }
        )
    return rows


def target_row(path: Path, target: float, optimize: int, model) -> dict:
    """Rate control at the target bpp, with and without encode-time optimisation."""
    x = load_image(path)
    r0 = api.encode(path, bpp=target, model=model, optimize=0)
    t1 = time.perf_counter()
    r = api.encode(path, bpp=target, model=model, optimize=optimize)
    return {
        "image": path.name,
        "bpp": r.bpp,
        "q_byte": r.quality,
        "rel_error": r.bpp / target - 1,
        "psnr": api.psnr(x, api.decode(r.data, model, decoder="mse").image),
        "encode_s": time.perf_counter() - t1,
        "bpp_no_optimize": r0.bpp,
        "psnr_no_optimize": api.psnr(x, api.decode(r0.data, model, decoder="mse").image),
    }


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def summarise(rows: list[dict], qualities: list[float]) -> list[dict]:
    """Means per quality, and the overhead of real bytes over the model's estimate."""
    summary = []
    for qual in qualities:
        sel = [r for r in rows if r["quality"] == qual]
        est = sum(r["est_bits"] for r in sel) / 8
        summary.append(
            {
                "quality": qual,
                "q_byte": sel[0]["q_byte"],
                "bpp": _mean(sel, "bpp"),
                "psnr": _mean(sel, "psnr"),
                "ms_ssim": _mean(sel, "ms_ssim") if sel[0]["ms_ssim"] is not None else None,
                "encode_s": _mean(sel, "encode_s"),
                "decode_s": _mean(sel, "decode_s"),
                "bytes": _mean(sel, "bytes"),
                "est_bytes": est / len(sel),
                "overhead_pct": 100 * (sum(r["bytes"] for r in sel) / est - 1),
                "coder_overhead_pct": 100 * (sum(r["payload_bytes"] for r in sel) / est - 1),
            }
        )
    return summary


def summarise_targets(targets: list[dict], target: float, optimize: int) -> dict:
    keys = ("bpp", "psnr", "encode_s", "bpp_no_optimize", "psnr_no_optimize")
    return {
        "target": target,
        "optimize_steps": optimize,
        "max_abs_rel_error": max(abs(t["rel_error"]) for t in targets),
        "within_3pct": sum(abs(t["rel_error"]) <= 0.03 for t in targets),
        **{k: _mean(targets, k) for k in keys},
        "rows": targets,
    }


def memory(first: Path, optimize: int) -> tuple[dict, dict]:
    """Peak RSS of compress / decompress / compress --optimize in child processes, and the
    1-vs-2-thread decode check."""
    with tempfile.TemporaryDirectory() as tmp:
        enc_mb, enc_wall = peak_rss_mb(["compress", str(first), "-o", f"{tmp}/a.ulic", "--quality", "50"])
        dec_mb, dec_wall = peak_rss_mb(["decompress", f"{tmp}/a.ulic", "-o", f"{tmp}/a.png"])
        opt_mb, opt_wall = peak_rss_mb(
            ["compress", str(first), "-o", f"{tmp}/b.ulic", "--quality", "50", "--optimize", str(optimize)]
        )
        threads = thread_check(Path(f"{tmp}/a.ulic").read_bytes())
    return {
        "image": first.name,
        "compress_peak_rss_mb": enc_mb,
        "compress_wall_s": enc_wall,
        "decompress_peak_rss_mb": dec_mb,
        "decompress_wall_s": dec_wall,
        "optimize_steps": optimize,
        "compress_optimize_peak_rss_mb": opt_mb,
        "compress_optimize_wall_s": opt_wall,
    }, threads


def write(out: Path, doc: dict) -> None:
    write_text_atomic(out, json.dumps(doc, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    paths = list_images(args.data)[: args.limit or None]
    if args.vae_only:
        doc = vae_only(paths)
        write(args.out, doc)
        print(json.dumps({k: v for k, v in doc.items() if k != "rows"}))
        return 0
    model = load_model()
    rows, targets = [], []
    for i, path in enumerate(paths):
        rows += quality_rows(path, args.qualities, model)
        targets.append(target_row(path, args.target_bpp, args.optimize, model))
        print(f"[{i + 1}/{len(paths)}] {path.name} target {targets[-1]['bpp']:.4f} bpp", file=sys.stderr, flush=True)
    mem, threads = memory(paths[0], args.optimize)
    doc = {
        "name": "ulic " + model.config["name"],
        "model_sha256": model.config["weights_sha256"],
        "images": len(paths),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "torch_threads": torch.get_num_threads(),
        "summary": summarise(rows, args.qualities),
        "target_bpp": summarise_targets(targets, args.target_bpp, args.optimize),
        "memory": mem,
        "threads_1_vs_2": threads,
        "rows": rows,
    }
    write(args.out, doc)
    for s in doc["summary"]:
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}))
    print(json.dumps({k: doc[k] for k in ("memory", "threads_1_vs_2")}))
    print(json.dumps({k: v for k, v in doc["target_bpp"].items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
