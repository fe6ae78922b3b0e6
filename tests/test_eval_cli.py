"""`ulic eval` end to end on tiny synthetic images: baselines, caching/resume, outputs, containers."""

from __future__ import annotations

import argparse
import io
import json

import numpy as np
import pytest
from PIL import Image

from ulic.errors import UlicError
from ulic.evaluation import containers
from ulic.evaluation.baselines import parse_setting, run_setting
from ulic.evaluation.cli import add_eval_parser


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_eval_parser(p.add_subparsers())
    return p


def _image(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([128 + 80 * np.sin(xx / (5 + seed)), 128 + 60 * np.cos(yy / 7), (xx * 2) % 256], -1)
    return np.clip(a + rng.normal(0, 8, a.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        Image.fromarray(_image(i)).save(d / f"im{i}.png")
    return d


def jpeg_eval(data_dir, out, cache, *extra: str) -> list[str]:
    """`ulic eval` arguments: JPEG at two settings on the two test images."""
    return [
        *f"eval --data {data_dir} --codec jpeg --settings jpeg:d2:q20 jpeg:d1:q50".split(),
        *f"--out {out} --cache {cache}".split(),
        *extra,
    ]


def test_eval_runs_caches_and_writes_outputs(data_dir, tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = jpeg_eval(data_dir, out, cache, "--metrics", "psnr,ms_ssim", "--workers", "1")
    a = _parser().parse_args(argv)
    assert a.func(a) == 0
    first = (out / "jpeg.csv").read_text()
    d = json.loads((out / "jpeg.json").read_text())
    assert d["name"] == "jpeg" and len(d["results"]["bpp"]) == 2
    assert d["results"]["bpp"] == sorted(d["results"]["bpp"])
    assert {"psnr-rgb", "ms-ssim", "setting"} <= set(d["results"])
    assert len(list(cache.rglob("*.json"))) == 4
    assert "4/4" in capsys.readouterr().err  # progress bar on stderr
    # Resume: a second run reuses the cache and gives identical output.
    mtimes = {p: p.stat().st_mtime_ns for p in cache.rglob("*.json")}
    a = _parser().parse_args(argv)
    assert a.func(a) == 0
    assert (out / "jpeg.csv").read_text() == first
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.json")} == mtimes


def test_a_metric_added_later_is_scored_on_the_cached_png(data_dir, tmp_path, monkeypatch):
    """Asking for a metric the cache lacks scores the cached decoded PNGs; the codec does not run."""
    from ulic.evaluation import runner

    out, cache = tmp_path / "out", tmp_path / "cache"
    a = _parser().parse_args(jpeg_eval(data_dir, out, cache, "--metrics", "psnr", "--workers", "1"))
    assert a.func(a) == 0
    before = {p: json.loads(p.read_text()) for p in cache.rglob("*.json")}

    def no_codec(item):
        raise AssertionError("the codec ran again")

    monkeypatch.setattr(runner, "code_image", no_codec)
    a = _parser().parse_args(jpeg_eval(data_dir, out, cache, "--metrics", "psnr,grid8", "--workers", "1"))
    assert a.func(a) == 0
    for p, old in before.items():
        new = json.loads(p.read_text())
        assert {k: new[k] for k in old} == old and isinstance(new["grid8"], float)
    assert "grid8" in (out / "jpeg_summary.csv").read_text().splitlines()[0]


def test_eval_user_errors(tmp_path):
    p = _parser()
    with pytest.raises(UlicError):
        a = p.parse_args(["eval", "--codec", "jpeg"])  # no --data
        a.func(a)
    with pytest.raises(UlicError):
        a = p.parse_args(["eval", "--data", str(tmp_path), "--codec", "jpeg"])  # no images
        a.func(a)
    with pytest.raises(UlicError):
        a = p.parse_args(["eval", "--data", str(tmp_path), "--codec", "jpeg", "--metrics", "psnr,foo"])
        a.func(a)
    with pytest.raises(UlicError):
        parse_setting("jpeg:x2:q3")


@pytest.mark.parametrize("setting", ["jpeg:d2:q30", "webp:d2:q30", "avif:d2:q30", "hevc:d2:q30", "jxl:d2:q4"])
def test_each_baseline_round_trips(setting):
    codec = setting.split(":")[0]
    if codec == "hevc":
        pytest.importorskip("pillow_heif")
    if codec == "jxl":
        pytest.importorskip("imagecodecs")
    if codec == "avif":
        from PIL import features

        if not features.check("avif"):
            pytest.skip("Pillow built without AVIF")
    x = _image(3)
    c = run_setting(x, setting)
    assert c.image.shape == x.shape and c.image.dtype == np.uint8
    assert 0 < c.nbytes < 3000
    assert np.abs(c.image.astype(float) - x).mean() < 60


def test_jpeg_and_webp_payload_counting():
    im = Image.fromarray(_image(4))
    b = io.BytesIO()
    im.save(b, "JPEG", quality=50)
    data = b.getvalue()
    assert containers.jpeg_payload_bytes(data) == len(data) - 18  # the 16+2-byte APP0 JFIF segment
    b = io.BytesIO()
    im.save(b, "WEBP", quality=50)
    assert len(containers.riff_chunk(b.getvalue(), b"VP8 ")) == len(b.getvalue()) - 20


def test_fid_settings_must_be_a_subset(data_dir, tmp_path):
    a = _parser().parse_args(
        [
            "eval",
            "--data",
            str(data_dir),
            "--codec",
            "jpeg",
            "--settings",
            "jpeg:d1:q50",
            "--fid",
            "64",
            "--fid-settings",
            "jpeg:d1:q20",
            "--out",
            str(tmp_path / "o"),
            "--cache",
            str(tmp_path / "c"),
            "--workers",
            "1",
        ]
    )
    with pytest.raises(UlicError, match="subset"):
        a.func(a)


def test_fid_only_for_chosen_settings_with_workers(data_dir, tmp_path):
    from ulic.errors import WeightsError
    from ulic.evaluation.fid import inception

    try:
        inception()
    except WeightsError as e:
        pytest.skip(f"Inception weights unavailable: {e}")
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = jpeg_eval(data_dir, out, cache, *"--metrics psnr --fid 64 --fid-settings jpeg:d1:q50 --workers 2".split())
    a = _parser().parse_args(argv)
    assert a.func(a) == 0
    res = json.loads((out / "jpeg.json").read_text())["results"]
    fid = dict(zip(res["setting"], res["fid64"], strict=False))
    assert fid["jpeg:d2:q20"] is None and fid["jpeg:d1:q50"] > 0
    feats = sorted(p.name for p in cache.rglob("*-p64.npy"))
    assert len(feats) == 4  # two originals + two reconstructions of the chosen setting
    mtimes = {p: p.stat().st_mtime_ns for p in cache.rglob("*-p64.npy")}
    a = _parser().parse_args(argv)
    assert a.func(a) == 0  # features are reused, not recomputed
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*-p64.npy")} == mtimes
    assert json.loads((out / "jpeg.json").read_text())["results"]["fid64"] == res["fid64"]


def test_compare_half_rate_is_minus_50_percent(tmp_path, capsys):
    def write(name, scale):
        res = {
            "bpp": [0.01 * scale, 0.02 * scale, 0.04 * scale],
            "psnr-rgb": [18.0, 20.0, 22.0],
            "lpips": [0.7, 0.6, 0.5],
            "fid64": [90.0, None, 50.0],
            "setting": ["a", "b", "c"],
        }
        (tmp_path / f"{name}.json").write_text(json.dumps({"name": name, "results": res}))

    write("anchor", 1.0)
    write("test", 0.5)
    a = _parser().parse_args(["eval", "--compare", "anchor", "test", "--out", str(tmp_path)])
    assert a.func(a) == 0
    cmp = json.loads((tmp_path / "test_vs_anchor.json").read_text())
    assert cmp["bd_rate_pct"] == {"psnr-rgb": -50.0, "lpips": -50.0, "fid64": -50.0}
    assert len(cmp["rows"]) == 6 and (tmp_path / "test_vs_anchor.md").is_file()
    assert "lpips -50.0%" in capsys.readouterr().out
    a = _parser().parse_args(["eval", "--compare", "anchor", "missing", "--out", str(tmp_path)])
    with pytest.raises(UlicError, match="cannot read results"):
        a.func(a)


def test_ulic_settings_name_the_optimisation_steps():
    from ulic.evaluation.cli import _settings
    from ulic.evaluation.runner import parse_ulic_setting

    assert _settings("ulic", ["50"], "diffusion4", 20) == ["ulic:q50:o20:diffusion4"]
    assert _settings("ulic", ["25"], "fast") == ["ulic:q25:fast"]
    assert _settings("ulic", ["60"], None, 0, 2) == ["ulic:q60:e2"]
    assert parse_ulic_setting("ulic:q50:o20:diffusion4") == (50.0, 20, "diffusion", 4, None, 0, False)
    assert parse_ulic_setting("ulic:q25:fast") == (25.0, 0, "fast", None, None, 0, False)  # made before :o existed
    assert parse_ulic_setting("ulic:q7.5") == (7.5, 0, None, None, None, 0, False)
    assert parse_ulic_setting("ulic:q50:diffusion:r0.5") == (50.0, 0, "diffusion", None, 0.5, 0, False)
    assert parse_ulic_setting("ulic:q50:r1") == (50.0, 0, None, None, 1.0, 0, False)
    assert parse_ulic_setting("ulic:q60:e2") == (60.0, 0, None, None, None, 2, False)
    assert _settings("ulic", ["40"], "diffusion4", 0, 1, True) == ["ulic:q40:e1:src:diffusion4"]
    assert parse_ulic_setting("ulic:q40:e1:src:diffusion4") == (40.0, 0, "diffusion", 4, None, 1, True)


def test_eval_under_torchrun_splits_items_and_matches_one_process(data_dir, tmp_path):
    """2 CPU processes (gloo): every (image, setting) item is coded once, by one rank, and rank 0
    writes the same per-image table as a single-process run."""
    import os
    import subprocess
    import sys

    out, cache = tmp_path / "out", tmp_path / "cache"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ulic.cli"]
    argv = jpeg_eval(data_dir, out, cache, "--metrics", "psnr", "--workers", "1")
    r = subprocess.run(
        cmd + argv, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    items = [json.loads(p.read_text()) for p in cache.rglob("*.json")]
    assert len(items) == 4  # 2 images x 2 settings, each once
    a = _parser().parse_args(
        jpeg_eval(data_dir, tmp_path / "one", tmp_path / "cache1", "--metrics", "psnr", "--workers", "1")
    )
    assert a.func(a) == 0

    def table(d):
        return [line.rsplit(",", 1)[0] for line in (d / "jpeg.csv").read_text().splitlines()]  # without seconds

    assert table(out) == table(tmp_path / "one")
