"""FID/KID of a codec setting over a data set, from the cached reconstructions (features cached)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ulic.atomic import atomic_path
from ulic.evaluation.runner import Item, Progress, image_digest, load_rgb, map_workers, to_tensor


def _features(png: Path, cache: Path, size: int) -> np.ndarray:
    if cache.is_file():
        return np.load(cache)
    from ulic.evaluation.fid import patch_features

    f = patch_features(to_tensor(load_rgb(png)), size).astype(np.float32)
    with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
        np.save(fh, f)
    return f


def _pairs(items: list[Item], size: int) -> list[tuple[Path, Path, Path, Path]]:
    """(original, its feature file, reconstruction, its feature file) for each item."""
    out = []
    for it in items:
        base = Path(it.cache)
        if base.name.startswith("ulic-model-"):  # originals do not depend on the model
            base = base.parent
        orig_cache = base / "_originals" / f"{Path(it.image).stem}-{image_digest(it.image)}-p{size}.npy"
        rec = it.stem.with_suffix(".png")
        out.append((Path(it.image), orig_cache, rec, it.stem.with_name(it.stem.name + f"-p{size}.npy")))
    return out


def _features_job(args: tuple[Path, Path, int]) -> None:
    _features(*args)


def precompute_features(items: list[Item], size: int, workers: int = 2, label: str = "fid") -> None:
    """Compute the missing patch-feature files of `items` (originals and reconstructions) in
    `workers` processes, so that `setting_fid` only reads caches."""
    jobs = {}
    for orig, orig_f, rec, rec_f in _pairs(items, size):
        for png, f in ((orig, orig_f), (rec, rec_f)):
            if not f.is_file():
                jobs[f] = (png, f, size)
    if jobs:
        map_workers(_features_job, list(jobs.values()), workers, Progress(len(jobs), f"{label} FID/{size} features"))


def setting_fid(items: list[Item], size: int) -> dict[str, float]:
    """FID/KID at patch size `size` between the originals and the reconstructions of `items`."""
    import torch

    from ulic.evaluation.fid import fid_kid

    torch.set_num_threads(1)
    ref, rec = [], []
    for orig, orig_f, png, rec_f in _pairs(items, size):
        ref.append(_features(orig, orig_f, size).astype(np.float64))
        rec.append(_features(png, rec_f, size).astype(np.float64))
    return fid_kid(ref, rec)
