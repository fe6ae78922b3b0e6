"""`python -m ulic.tools.bench_codec --vae-only`: the TAEF2 ceiling measurement writes a sane JSON."""

from __future__ import annotations

import json

from conftest import needs_vae
from PIL import Image


@needs_vae
def test_vae_only_reports_round_trip_quality(tmp_path, photo):
    from ulic.tools import bench_codec as bench

    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(photo).save(d / "a.png")
    Image.fromarray(photo[:61, :45].copy()).save(d / "b.png")  # not a multiple of 8: padded, cropped
    out = tmp_path / "vae.json"
    assert bench.main(["--data", str(d), "--out", str(out), "--vae-only"]) == 0
    doc = json.loads(out.read_text())
    assert doc["images"] == 2 and [r["image"] for r in doc["rows"]] == ["a.png", "b.png"]
    assert 20 < doc["psnr"] < 60 and 0.8 < doc["ms_ssim"] <= 1.0
