"""Encode time at each `--effort` level against the plain encoder, one image, JSON out.

    python -m ulic.tools.bench_effort --image "$ULIC_KODAK_DIR/kodim23.png" --out results/bench/effort.json

Each level is timed end to end through `ulic.api.encode` (reading, autoencoder, analysis, rate
search, optimisation), best of --runs, after one warm-up encode; the file bytes are recorded too.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from ulic.diffusion import MAX_EFFORT
from ulic.tools.common import emit_json


def run(image: str, quality: float, runs: int, threads: int) -> dict:
    import torch

    from ulic.api import encode

    torch.set_num_threads(threads)
    encode(image, quality=quality)  # warm-up: weights loaded, allocator primed
    rows = []
    for effort in range(MAX_EFFORT + 1):
        best, size, stages = float("inf"), 0, {}
        for _ in range(runs):
            t = time.perf_counter()
            r = encode(image, quality=quality, effort=effort)
            if time.perf_counter() - t < best:
                best, size, stages = time.perf_counter() - t, len(r.data), r.seconds
        rows.append(
            {"effort": effort, "seconds": round(best, 3), "bytes": size, "optimize_s": round(stages["optimize"], 3)}
        )
    plain = rows[0]["seconds"]
    for row in rows:
        row["x_plain"] = round(row["seconds"] / plain, 3)
    return {
        "image": Path(image).name,
        "quality": quality,
        "threads": threads,
        "runs": runs,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "levels": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", required=True)
    ap.add_argument("--quality", type=float, default=50.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    emit_json(run(a.image, a.quality, a.runs, a.threads), a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
