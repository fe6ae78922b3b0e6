"""The benchmark tools write sane JSON: the TAEF2 ceiling (`bench_codec --vae-only`), `ulic bench`,
and the TAEF2 execution variants (`bench_vae_layout`)."""

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


@needs_vae
def test_ulic_bench_reports_every_stage(tmp_path, cli):
    """`ulic bench` at one small size: every stage timed, ratios to the VAE, peak memory, a plot."""
    out = tmp_path / "stages.json"
    r = cli("bench", "--sizes", "64x48", "--runs", "1", "--bpp", "0.1", "--out", out)
    assert r.rc == 0, r.err
    row = json.loads(out.read_text())["sizes"][0]
    assert row["size"] == "64x48" and row["peak_rss_mb"] > 0
    for stage in ("read", "vae_encode", "analysis", "rate_search", "entropy_coding", "total"):
        assert row["encode"][stage] >= 0
    for stage in ("parse", "entropy_decode", "synthesis", "vae_decode", "png_write", "total"):
        assert row["decode"][stage] >= 0
    assert row["encode_over_vae"] > 0 and row["decode_over_vae"] > 0
    assert out.with_suffix(".png").exists()


@needs_vae
def test_vae_layout_bench_compares_variants_to_the_default(tmp_path):
    """Every execution variant of TAEF2 runs, and its output stays within float rounding."""
    from ulic.tools.bench_vae_layout import main

    out = tmp_path / "layout.json"
    assert main(["--size", "64x64", "--runs", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["results"]
    assert {"encoder/default", "encoder/channels_last", "decoder/jit_frozen"} <= set(res)
    # float32 variants agree to rounding; bfloat16 autocast (only on CPUs with native bfloat16)
    # keeps 8 mantissa bits, so its latents/pixels may differ by a few hundredths
    for name, v in res.items():
        assert v["seconds"] > 0 and v["max_abs_diff"] < (0.1 if "bf16" in name else 1e-3), (name, v)
