"""FID/KID of a codec setting over a data set, from the cached reconstructions (features cached)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ulic.evaluation.runner import Item, image_digest, load_rgb, to_tensor


def _features(png: Path, cache: Path, size: int) -> np.ndarray:
    if cache.is_file():
        return np.load(cache)
    from ulic.evaluation.fid import patch_features
    f = patch_features(to_tensor(load_rgb(png)), size).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npy")
    np.save(tmp, f)
    tmp.replace(cache)
    return f


def setting_fid(items: list[Item], size: int) -> dict[str, float]:
    """FID/KID at patch size `size` between the originals and the reconstructions of `items`."""
    from ulic.evaluation.fid import fid_kid
    import torch
    torch.set_num_threads(1)
    ref, rec = [], []
    for it in items:
        base = Path(it.cache)
        if base.name.startswith("ulic-model-"):  # originals do not depend on the model
            base = base.parent
        orig_cache = base / "_originals" / f"{Path(it.image).stem}-{image_digest(it.image)}-p{size}.npy"
        ref.append(_features(Path(it.image), orig_cache, size).astype(np.float64))
        rec.append(_features(it.stem.with_suffix(".png"), it.stem.with_name(it.stem.name + f"-p{size}.npy"),
                             size).astype(np.float64))
    return fid_kid(ref, rec)
