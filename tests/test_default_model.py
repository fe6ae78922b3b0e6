"""The shipped model: loads with its hash, fits the size budget, codes a photo sensibly."""

from pathlib import Path

import numpy as np
import torch
from conftest import needs_vae

from ulic import api
from ulic.model_store import DEFAULT_MODEL, load_model


def test_shipped_model_loads_and_is_small():
    m = load_model(str(DEFAULT_MODEL))
    assert m.config["weights_sha256"] == m.fingerprint.hex()
    total = sum(p.stat().st_size for p in Path(DEFAULT_MODEL).iterdir())
    assert total <= 20_000_000


@needs_vae
def test_shipped_model_rate_control_and_quality(photo):
    m = load_model(str(DEFAULT_MODEL))
    low = api.encode(photo, quality=0, model=m)
    high = api.encode(photo, quality=100, model=m)
    assert len(low.data) < len(high.data)
    d = api.decode(high.data, model=m)
    ref = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    assert api.psnr(ref, d.image) > api.psnr(ref, api.decode(low.data, model=m).image)
    assert np.isfinite(api.psnr(ref, d.image))
