"""What the SRC section costs: its share of the file bytes at each quality, and its bytes when the
decoder's prediction is replaced by the uniform prior (what the "residual" saves), JSON out.

    python -m ulic.tools.bench_src --data "$ULIC_KODAK_DIR" --out results/kodak/src_bytes.json

Real files: each image is coded at each --qualities with and without the section (the same
latents), and the difference in file bytes is the section's whole cost (kind byte, vocabulary id,
flags, coded ids and the container's section count and length).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ulic.tools.common import emit_json


def run(data: Path, qualities: list[float], limit: int | None) -> dict:
    import torch

    from ulic import api
    from ulic.codec.entropy_models import PRECISION
    from ulic.imageio import list_images, load_image
    from ulic.model_store import load_model, load_semantics
    from ulic.semantics.encoder import region_embeddings
    from ulic.semantics.predictor import uniform_tables
    from ulic.semantics.src import code_ids, concept_tables

    model = load_model()
    sem = load_semantics(str(model.folder)) if model.folder is not None else None
    if sem is None:
        raise SystemExit("bench_src: the model has no concept vocabulary (semantics.json)")
    rows: dict[float, list[dict]] = {q: [] for q in qualities}
    paths = list_images(data)[:limit]
    for p in paths:
        x = load_image(p)
        h, w = x.shape[2:]
        ids = sem.assign(region_embeddings(x))
        y, z = model.codec.analyse(api.encode_latent(x, model))
        plain, with_src = api.LatentCoder(y, z, h, w, model), api.LatentCoder(y, z, h, w, model, (), (sem, ids))
        for quality in qualities:
            q = api.quality_to_byte(quality)
            _, sym, mean_s, _ = model.codec.symbols(y, z, q)
            tables = concept_tables(sem, sym, mean_s, (h, w), q)
            p_true = tables[np.arange(len(ids)), ids] / (1 << PRECISION)
            rows[quality].append(
                {
                    "file_bytes": plain.size(q),
                    "src_file_bytes": with_src.size(q) - plain.size(q),
                    "predicted_code_bytes": len(code_ids(ids, tables)),
                    "uniform_code_bytes": len(code_ids(ids, uniform_tables(len(ids), sem.k))),
                    "ideal_bits_per_region": float(-np.log2(p_true).mean()),
                    "top1": float((tables.argmax(1) == ids).mean()),
                }
            )
    table = []
    for quality, rs in rows.items():
        mean = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
        mean["share_of_file"] = mean["src_file_bytes"] / (mean["file_bytes"] + mean["src_file_bytes"])
        table.append({"quality": quality, **{k: round(v, 4) for k, v in mean.items()}})
    return {
        "data": data.name,  # the folder's name: no machine's path in the results
        "images": len(paths),
        "k": sem.k,
        "regions": len(ids),
        "uniform_bits_per_region": float(np.log2(sem.k)),
        "vocabulary_id": sem.vocabulary_id,
        "torch": torch.__version__,
        "rows": table,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--qualities", type=float, nargs="+", default=[25, 40, 50, 60, 75])
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    emit_json(run(a.data, a.qualities, a.limit), a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
