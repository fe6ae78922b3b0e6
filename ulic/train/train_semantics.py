"""Learn the concept vocabulary and its predictor (SRC) on the training photos; write them into a
model folder as semantics.json + semantics.safetensors.

    python -m ulic.train.train_semantics --data "$ULIC_SHARED/data/train" "$ULIC_SHARED/data/train_extra" \\
        --model ulic/models/ulic-base --cache cache/semantics.safetensors

1. Each photo (scaled so its long side is at most --long-side) gives its region embeddings
   (`ulic.semantics.encoder`) and, at every q byte of --q-bytes, the predictor's integer region
   features of the shipped codec's symbols; both are cached (--cache), so steps 2-4 rerun in
   seconds.
2. Spherical k-means of the training regions' embeddings -> K concepts.
3. A softmax regression of each region's concept on its features -> the integer predictor.
4. On the held-out photos (the same BSDS500 `val_` photos as the other stages): the ideal bits
   per region under the predictor and under the uniform prior, and the real SRC section bytes.
Evaluation sets are never read.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from safetensors.torch import load_file, save_file

from ulic.atomic import atomic_path
from ulic.codec.entropy_models import PRECISION
from ulic.imageio import list_images
from ulic.semantics.predictor import fit, region_features, uniform_tables
from ulic.semantics.src import src_section, y_extent
from ulic.semantics.vocabulary import Semantics, nearest, spherical_kmeans
from ulic.train.pixel_crops import held_out


def load_photo(path: Path, long_side: int) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1], EXIF-rotated, long side at most long_side."""
    im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    s = min(1.0, long_side / max(im.size))
    if s < 1:
        im = im.resize((max(16, round(im.width * s)), max(16, round(im.height * s))), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255


def build_cache(paths: list[Path], q_bytes: list[int], long_side: int, model_dir: str, out: Path) -> None:
    """Embeddings (N, R, DIM) float16 and features (N, Q, R, F) int32 of every photo, one file."""
    from ulic.api import encode_latent
    from ulic.model_store import load_model
    from ulic.semantics.encoder import region_embeddings

    model = load_model(model_dir)
    emb, feats, t0 = [], [], time.time()
    for i, p in enumerate(paths):
        x = load_photo(p, long_side)
        emb.append(region_embeddings(x).half())
        y, z = model.codec.analyse(encode_latent(x, model))
        hw = y_extent(x.shape[2], x.shape[3])
        rows = []
        for q in q_bytes:
            _, sym, mean_s, _ = model.codec.symbols(y, z, q)
            rows.append(region_features(sym, mean_s, hw, q))
        feats.append(torch.from_numpy(np.stack(rows).astype(np.int32)))
        if (i + 1) % 50 == 0:
            print(f"{i + 1}/{len(paths)} photos, {time.time() - t0:.0f} s", flush=True)
    tensors = {"embeddings": torch.stack(emb), "features": torch.stack(feats), "q_bytes": torch.tensor(q_bytes)}
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={"paths": json.dumps([str(p) for p in paths])})


def code_stats(sem: Semantics, feats: np.ndarray, ids: np.ndarray) -> dict[str, float]:
    """Mean ideal bits per region (predicted, uniform) and mean SRC section bytes over feats
    (N, Q, R, F) with the photos' concept ids (N, R)."""
    bits, sect = [], []
    for n in range(feats.shape[0]):
        for j in range(feats.shape[1]):
            tables = sem.predictor.tables(feats[n, j].astype(np.int64))
            p = tables[np.arange(len(ids[n])), ids[n]] / (1 << PRECISION)
            bits.append(float(-np.log2(p).mean()))
            sect.append(len(src_section(ids[n], tables, sem)))
    uni = -math.log2(uniform_tables(1, sem.k)[0, 1] / (1 << PRECISION))
    return {
        "bits_per_region": float(np.mean(bits)),
        "uniform_bits_per_region": uni,
        "section_bytes": float(np.mean(sect)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", type=Path, required=True, help="training photo folders")
    ap.add_argument("--model", required=True, help="model folder: its codec prices, semantics are written there")
    ap.add_argument("--cache", type=Path, default=Path("cache/semantics.safetensors"))
    ap.add_argument("--limit", type=int, default=320, help="photos used (a seeded sample)")
    ap.add_argument("--long-side", type=int, default=512)
    ap.add_argument("--q-bytes", type=int, nargs="+", default=[64, 102, 128, 153, 191])
    ap.add_argument("--k", type=int, default=32, help="concepts")
    ap.add_argument("--fit-steps", type=int, default=150, help="full-batch Adam steps of the predictor")
    ap.add_argument("--decay", type=float, default=1e-2, help="the predictor's weight decay")
    ap.add_argument("--n-val", type=int, default=40, help="held-out BSDS500 val_ photos")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dry-run", action="store_true", help="fit and report, write nothing to the model")
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    paths = sorted(p for d in a.data for p in list_images(d, recursive=True))
    val = held_out(paths, a.n_val)
    train = [p for p in paths if p not in val]
    random.Random(a.seed).shuffle(train)
    chosen = sorted(val, key=lambda p: p.name) + train[: max(0, a.limit - len(val))]
    if not a.cache.exists():
        print(f"caching {len(chosen)} photos -> {a.cache}", flush=True)
        a.cache.parent.mkdir(parents=True, exist_ok=True)
        build_cache(chosen, a.q_bytes, a.long_side, a.model, a.cache)
    t = load_file(str(a.cache))
    emb, feats = t["embeddings"].float(), t["features"].numpy().astype(np.int64)  # (N, R, D), (N, Q, R, F)
    nv = len(val)
    t0 = time.time()
    centroids = spherical_kmeans(torch.nn.functional.normalize(emb[nv:].flatten(0, 1), dim=1), a.k, seed=a.seed)
    ids = np.stack([nearest(centroids, e) for e in emb])  # (N, R)
    n, q, r, f = feats.shape
    x = feats[nv:].reshape(-1, f)
    y = np.repeat(ids[nv:][:, None, :], q, axis=1).reshape(-1)
    sem = Semantics(centroids, fit(x, y, a.k, steps=a.fit_steps, decay=a.decay))
    train_stats = code_stats(sem, feats[nv : nv + nv], ids[nv : nv + nv])  # as many training photos
    val_stats = code_stats(sem, feats[:nv], ids[:nv])
    used = np.bincount(ids[nv:].reshape(-1), minlength=a.k)
    report = {
        "photos": int(n),
        "held_out": nv,
        "regions_per_photo": int(r),
        "q_bytes": [int(v) for v in t["q_bytes"]],
        "k": a.k,
        "fit_steps": a.fit_steps,
        "decay": a.decay,
        "concepts_used": int((used > 0).sum()),
        "fit_seconds": round(time.time() - t0, 1),
        "train": train_stats,
        "held_out_stats": val_stats,
    }
    print(json.dumps(report, indent=1), flush=True)
    if not a.dry_run:
        from ulic.model_store import save_semantics

        extra = {"data": [d.name for d in a.data], "long_side": a.long_side, "report": report}
        save_semantics(sem, Path(a.model), extra)
        print(f"wrote {a.model}/semantics.json (vocabulary id {sem.vocabulary_id})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
