"""The perceptual fidelity optimiser (`--effort`): its objective, the API and the CLI."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import needs_vae

from ulic import api
from ulic.codec.model import Q_STEPS, lmbda_of
from ulic.codec.optimize import tune_latents
from ulic.diffusion import MAX_EFFORT, pfo
from ulic.diffusion.decode import sample
from ulic.diffusion.networks import DiffusionConfig, DiffusionDecoder
from ulic.errors import UlicError

TINY_R = DiffusionConfig(
    drm_width=8, drm_blocks=1, spatial=4, semantic=8, widths=(8, 16), blocks=1, emb=8, realism=True, pixel_decoder=True
)


def _decoder(seed: int = 0) -> DiffusionDecoder:
    dec = DiffusionDecoder(TINY_R).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in dec.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return dec


@pytest.mark.parametrize("h, w, size", [(5, 7, 96), (20, 13, 8), (16, 16, 8), (1, 1, 4)])
def test_windows_cover_the_latent_once(h, w, size):
    seen = torch.zeros(h, w, dtype=torch.int64)
    for y0, y1, x0, x1 in pfo.windows(h, w, size):
        assert 0 < y1 - y0 <= size and 0 < x1 - x0 <= size
        seen[y0:y1, x0:x1] += 1
    assert torch.equal(seen, torch.ones(h, w, dtype=torch.int64))


def test_one_window_objective_is_the_whole_latent_mse_and_its_gradient():
    dec = _decoder()
    z_c, target = torch.randn(1, 32, 6, 9), torch.randn(1, 32, 6, 9)
    value, grad = pfo.latent_path_mse(dec, target, 100, 1.0, weight=2.0)(z_c, 3, True)
    assert not any(p.grad is not None for p in dec.parameters())  # the decoder's weights untouched
    leaf = z_c.clone().requires_grad_(True)
    eps = torch.randn(z_c.shape, generator=torch.Generator().manual_seed(3))
    want = 2.0 * (sample(dec, leaf, 100, pfo.PATH_STEPS, eps, torch.ones(1)) - target).pow(2).mean()
    want.backward()
    assert value == pytest.approx(want.item(), rel=1e-5)
    torch.testing.assert_close(grad, leaf.grad, rtol=1e-4, atol=1e-7)
    again = pfo.latent_path_mse(dec, target, 100, 1.0, weight=2.0)(z_c, 3, False)
    assert again == (pytest.approx(value, rel=1e-6), None)  # deterministic, score only


def test_windowed_objective_scores_every_position():
    """Windows of 4 on a 12 x 12 latent: the value is near the one-pass value (only the context
    cut at window borders differs) and every position gets a gradient."""
    dec = _decoder(1)
    z_c, target = torch.randn(1, 32, 12, 12), torch.randn(1, 32, 12, 12)
    whole, _ = pfo.latent_path_mse(dec, target, 100, 1.0)(z_c, 0, False)
    value, grad = pfo.latent_path_mse(dec, target, 100, 1.0, window=4)(z_c, 0, True)
    assert value == pytest.approx(whole, rel=0.05)
    assert grad is not None and bool((grad.abs().sum(1) > 0).all())


def _mean_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A stand-in perceptual distance (N,): cheap, offline, with a gradient."""
    return (a - b).abs().mean((1, 2, 3))


def test_pixel_objective_is_mse_plus_perceptual_through_the_whole_path(monkeypatch):
    """Effort 3: one window gives MSE + weight x perceptual of the decoded image (DRM, the CDM
    steps, the pixel decoder at R) against the image, and its gradient; the decoder's weights get
    none. The image is 44 x 70 px (a partial last latent row and column)."""
    monkeypatch.setattr(pfo, "native_bf16", lambda: False)  # float32 on every CPU: compared within 1e-5
    dec = _decoder(5)
    z_c, image = torch.randn(1, 32, 6, 9), torch.rand(1, 3, 44, 70)
    value, grad = pfo.pixel_path_loss(dec, image, 100, 1.0, 2, _mean_abs, weight=0.5)(z_c, 7, True)
    assert not any(p.grad is not None for p in dec.parameters())
    leaf = z_c.clone().requires_grad_(True)
    eps = torch.randn(z_c.shape, generator=torch.Generator().manual_seed(7))
    r = torch.ones(1)
    img = dec.pixel(sample(dec, leaf, 100, 2, eps, r), r)[:, :, :44, :70]
    want = (img - image).pow(2).mean() + 0.5 * _mean_abs(img.clamp(0, 1), image).mean()
    want.backward()
    assert value == pytest.approx(want.item(), rel=1e-5)
    torch.testing.assert_close(grad, leaf.grad, rtol=1e-4, atol=1e-7)
    again = pfo.pixel_path_loss(dec, image, 100, 1.0, 2, _mean_abs, weight=0.5)(z_c, 7, False)
    assert again == (pytest.approx(value, rel=1e-6), None)


def test_windowed_pixel_objective_weighs_windows_by_their_pixels(monkeypatch):
    """Windows of 4 on a 10 x 10 latent of a 76 x 80 image: near the one-pass value (only the
    context cut at window borders differs), and every position gets a gradient."""
    monkeypatch.setattr(pfo, "native_bf16", lambda: False)
    dec = _decoder(6)
    z_c, image = torch.randn(1, 32, 10, 10), torch.rand(1, 3, 76, 80)
    whole, _ = pfo.pixel_path_loss(dec, image, 100, 1.0, 1, _mean_abs)(z_c, 0, False)
    value, grad = pfo.pixel_path_loss(dec, image, 100, 1.0, 1, _mean_abs, window=4)(z_c, 0, True)
    assert value == pytest.approx(whole, rel=0.05)
    assert grad is not None and bool((grad.abs().sum(1) > 0).all())


def test_pixel_objective_needs_a_pixel_decoder():
    dec = DiffusionDecoder(dataclasses.replace(TINY_R, pixel_decoder=False))
    with pytest.raises(ValueError, match="pixel decoder"):
        pfo.pixel_path_loss(dec, torch.rand(1, 3, 16, 16), 100, 1.0, 1, _mean_abs)


def test_tuning_never_returns_a_costlier_pair(tiny_codec):
    """tune_latents keeps the lowest loss seen: the result's loss is not above the start's (each
    step scores under its own sampler noise, hence the tolerance)."""
    torch.manual_seed(2)
    dec = _decoder(2)
    codec = tiny_codec
    latent = torch.randn(1, 32, 16, 16)
    y, z = codec.analyse(latent)
    q = 140
    obj = pfo.latent_path_mse(dec, latent, q, 1.0)
    lam = float(lmbda_of(torch.tensor(q / Q_STEPS), codec.cfg))

    def loss(yy: torch.Tensor, zz: torch.Tensor) -> float:
        gains = codec.byte_gains(q)
        with torch.no_grad():
            z_hat = codec.quantize(zz * gains.z, "ste")
            mean_s, scale_s = codec.hyper(z_hat, gains)
            y_hat = codec.quantize(yy * gains.y, "ste", mean_s)
            bits = codec.bits(y_hat, mean_s, scale_s, z_hat).sum().item()
            z_c = codec.g_s(y_hat * gains.y_inv)
        return bits / (128 * 128) + lam * obj(z_c, 4, False)[0]

    y2, z2 = tune_latents(codec, obj, (128, 128), y, z, q, 4, 0.05)
    assert loss(y2, z2) <= loss(y, z) * 1.01  # up to the sampler noise, which differs per step


@pytest.fixture(scope="module")
def tiny_model_with_realism(tmp_path_factory):
    from conftest import make_tiny_codec

    from ulic.model_store import load_model, save_decoder, save_model

    d = tmp_path_factory.mktemp("tiny_pfo")
    save_model(make_tiny_codec(), d, "tiny-test")
    save_decoder(_decoder(4), d, {"default_decoder": "diffusion", "default_steps": 2, "default_realism": 1.0})
    return load_model(str(d))


@needs_vae
def test_effort_writes_ordinary_files(tiny_model_with_realism, photo):
    m = tiny_model_with_realism
    img = photo[:64, :96].copy()
    plain = api.encode(img, quality=40, model=m)
    tuned = api.encode(img, quality=40, model=m, effort=1)
    again = api.encode(img, quality=40, model=m, effort=1)
    assert tuned.data == again.data  # the optimiser is deterministic on one machine
    assert tuned.seconds["optimize"] > plain.seconds["optimize"]
    d = api.decode(tuned.data, model=m)
    assert d.image.shape == (1, 3, 64, 96) and d.header.quality == tuned.quality
    target = api.encode(img, bpp=8 * len(plain.data) / (64 * 96), model=m, effort=2)
    assert abs(len(target.data) - len(plain.data)) <= 0.03 * len(plain.data) + 3  # the rate search reruns


@needs_vae
def test_pixel_effort_writes_ordinary_files(tiny_model_with_realism, photo):
    """Effort 3 (LPIPS-VGG through the whole decoding path): deterministic, decodable, and it
    meets a byte limit through the rate search on the tuned latents."""
    m = tiny_model_with_realism
    img = photo[:64, :96].copy()
    plain = api.encode(img, quality=40, model=m)
    tuned = api.encode(img, quality=40, model=m, effort=3)
    assert tuned.data == api.encode(img, quality=40, model=m, effort=3).data
    assert api.decode(tuned.data, model=m).image.shape == (1, 3, 64, 96)
    limit = api.encode(img, max_bytes=len(plain.data), model=m, effort=3)
    assert len(limit.data) <= len(plain.data)


def test_pixel_effort_needs_a_pixel_decoder(tmp_path, photo):
    """A stage-2 decoder (no pixel decoder of its own) gets a one-line error before any work."""
    from conftest import make_tiny_codec

    from ulic.model_store import load_model, save_decoder, save_model

    save_model(make_tiny_codec(), tmp_path, "tiny-test")
    stage2 = DiffusionDecoder(dataclasses.replace(TINY_R, pixel_decoder=False)).eval()
    save_decoder(stage2, tmp_path, {"default_decoder": "diffusion", "default_steps": 2, "default_realism": 1.0})
    m = load_model(str(tmp_path))
    with pytest.raises(UlicError, match="effort 3 needs a decoder with its own pixel decoder"):
        api.encode(photo[:64, :64].copy(), quality=40, model=m, effort=3)


def test_effort_options_are_checked_before_work(tiny_model):
    for bad in (-1, MAX_EFFORT + 1, 1.5, True, "2"):
        with pytest.raises(UlicError, match="effort must be"):
            api.check_encode_options(effort=bad)
    with pytest.raises(UlicError, match="not both"):
        api.check_encode_options(optimize=5, effort=1)


@needs_vae
def test_effort_needs_a_decoder(tiny_model, photo):
    with pytest.raises(UlicError, match="effort needs a model with a diffusion decoder"):
        api.encode(photo[:64, :64].copy(), quality=40, model=tiny_model, effort=1)


def test_cli_rejects_a_bad_effort_in_one_line(cli, tmp_path):
    from PIL import Image

    src = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(src)
    for args in (["--effort", "9"], ["--effort", "1", "--optimize", "3"]):
        r = cli("compress", str(src), *args)
        assert r.rc == 2 and r.err.count("\n") == 1 and "effort" in r.err and "Traceback" not in r.err


def test_effort_levels_grow():
    """Each level costs more than the one below: more steps, or the same steps of the pixel
    objective (the top level only)."""
    levels = [pfo.EFFORTS[e] for e in range(1, MAX_EFFORT + 1)]
    cost = [(e.pixel, e.steps) for e in levels]
    assert cost == sorted(cost) and len(set(cost)) == MAX_EFFORT
    assert [e.pixel for e in levels] == [False] * (MAX_EFFORT - 1) + [True]
    assert dataclasses.is_dataclass(pfo.EFFORTS[1])


@needs_vae
def test_effort_bench_times_every_level(tiny_model_with_realism, tmp_path, monkeypatch, photo):
    import json

    from PIL import Image

    from ulic.model_store import load_model
    from ulic.tools.bench_effort import main

    monkeypatch.setenv("ULIC_MODEL_DIR", str(tiny_model_with_realism.folder))
    load_model.cache_clear()
    src, out = tmp_path / "a.png", tmp_path / "effort.json"
    Image.fromarray(photo[:64, :96].copy()).save(src)
    try:
        assert main(["--image", str(src), "--runs", "1", "--out", str(out)]) == 0
    finally:
        load_model.cache_clear()
    levels = json.loads(out.read_text())["levels"]
    assert [r["effort"] for r in levels] == list(range(MAX_EFFORT + 1))
    assert levels[0]["x_plain"] == 1.0 and all(r["seconds"] > 0 and r["bytes"] > 0 for r in levels)


def test_each_level_brings_its_own_perceptual_weight(monkeypatch, tiny_model_with_realism, photo):
    """Effort 3's LPIPS-VGG weight comes from its `Effort`, and the sweep tool's variant is undone
    after its block."""
    from ulic.tools.pfo_sweep import effort_variant

    seen = []
    real = api.pixel_path_loss

    def spy(*args, **kw):
        seen.append(args[6])  # the weight, positional as `_optimized` passes it
        return real(*args, **kw)

    monkeypatch.setattr(api, "pixel_path_loss", spy)
    img = photo[:64, :64].copy()
    before = pfo.EFFORTS[3]
    with effort_variant(0.75, 2):
        assert pfo.EFFORTS[3].steps == 2 and pfo.EFFORTS[3].pixel
        api.encode(img, quality=40, model=tiny_model_with_realism, effort=3)
    assert pfo.EFFORTS[3] == before and before.weight == pfo.W_PERCEPTUAL
    api.encode(img, quality=40, model=tiny_model_with_realism, effort=3)
    assert seen == [0.75, pfo.W_PERCEPTUAL]


@needs_vae
def test_noise_probe_reports_the_spread_over_seeds(tiny_model_with_realism, tmp_path, monkeypatch, photo):
    import json

    from PIL import Image

    from ulic.model_store import load_model
    from ulic.tools.noise_probe import main

    monkeypatch.setenv("ULIC_MODEL_DIR", str(tiny_model_with_realism.folder))
    load_model.cache_clear()
    (tmp_path / "in").mkdir()
    Image.fromarray(photo[:64, :96].copy()).save(tmp_path / "in" / "a.png")
    out = tmp_path / "probe.json"
    try:
        assert main(["--data", str(tmp_path / "in"), "--seeds", "3", "--quality", "40", "--out", str(out)]) == 0
    finally:
        load_model.cache_clear()
    (row,) = json.loads(out.read_text())["photos"]
    assert row["image"] == "a.png" and row["bpp"] > 0
    assert row["latent_max_abs_diff_over_std"] > 0  # the tiny random decoder does read its noise
    s = row["lpips_alex"]
    assert s["min"] <= s["mean"] <= s["max"] and s["stdev"] >= 0
