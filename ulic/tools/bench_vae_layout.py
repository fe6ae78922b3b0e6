"""The frozen TAEF2 autoencoder under other CPU execution variants, against the default path:
median seconds and the largest difference of the output.

    python -m ulic.tools.bench_vae_layout --size 768x512 --runs 3 --out results/bench/vae_layout.json

Variants (each kept only if it is faster at no visible cost; docs/results.md, "Speed"):
    default         float32, contiguous (NCHW): what ulic runs
    channels_last   float32, channels-last (NHWC) memory format for the weights and the input
    jit_frozen      TorchScript, frozen and `optimize_for_inference` (oneDNN conv + ReLU fusion)
    bf16_autocast   bfloat16 autocast: only where the CPU computes bfloat16 natively
The image is the bundled example resized to --size (multiple of 8, so one untiled pass when
small enough); one warm-up run per variant, then --runs timed runs; the malloc settings of
`ulic.runtime.tune_allocator` are on, as in `ulic.api`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ulic.runtime import channels_last
from ulic.tools.common import emit_json, parse_size


def _timed(fn: Callable[[], torch.Tensor], runs: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def variants(net: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """name -> a call of `net` on `x` under that variant (inference mode, float32 result)."""
    from ulic.runtime import native_bf16

    cl_net = channels_last(copy.deepcopy(net))
    cl_x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(copy.deepcopy(net).eval(), x)))
    out: dict[str, Callable[[], torch.Tensor]] = {
        "default": lambda: net(x),
        "channels_last": lambda: cl_net(cl_x).contiguous(),
        "jit_frozen": lambda: frozen(x),
    }
    if native_bf16():

        def bf16() -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return cl_net(cl_x).float().contiguous()

        out["bf16_autocast"] = bf16
    return out


def measure(size: tuple[int, int], runs: int) -> dict[str, dict[str, float]]:
    from PIL import Image

    from ulic import api
    from ulic.vae.weights import load_vae

    vae = load_vae()
    img = Image.open(Path(api.__file__).parent / "assets" / "example.png").convert("RGB").resize(size)
    x = torch.from_numpy(__import__("numpy").asarray(img).copy()).permute(2, 0, 1)[None].float() / 255
    results: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        latent = vae.encoder(x)
    for part, net, inp in (("encoder", vae.encoder, x), ("decoder", vae.decoder, latent)):
        ref = None
        for name, fn in variants(net, inp).items():
            with torch.inference_mode():
                seconds, out = _timed(fn, runs)
            ref = out if ref is None else ref
            results[f"{part}/{name}"] = {"seconds": seconds, "max_abs_diff": float((out - ref).abs().max())}
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=parse_size, default=(768, 512), help="WIDTHxHEIGHT (default 768x512)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    from ulic.runtime import tune_allocator

    tuned = tune_allocator()  # as ulic.api runs (docs/results.md, "Speed")
    doc = {
        "malloc_tuned": tuned,
        "size": f"{args.size[0]}x{args.size[1]}",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "results": measure(args.size, args.runs),
    }
    emit_json(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
