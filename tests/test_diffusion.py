"""Stage 2: schedule identities, DDIM exactness, tiny seeded DRM/denoiser, storage, training."""

import json

import pytest
import torch
from conftest import needs_vae

from ulic.diffusion.decode import refine, seed_from_bytes
from ulic.diffusion.networks import DiffusionConfig, DiffusionDecoder
from ulic.diffusion.schedule import DDIM, alphas_cumprod, cdm_forward, ddim_timesteps, effective_noise, start_latent
from ulic.errors import WeightsError
from ulic.model_store import load_decoder, save_decoder

TINY = DiffusionConfig(drm_width=8, drm_blocks=1, spatial=4, semantic=8, widths=(8, 16), blocks=1, emb=8)


def test_schedule_is_decreasing_in_0_1():
    a = alphas_cumprod()
    assert a.shape == (1000,) and bool((a[1:] < a[:-1]).all()) and 0 < a[-1] < a[0] < 1


def test_cdm_forward_starts_at_the_noised_compressed_latent():
    a = alphas_cumprod()
    g = torch.Generator().manual_seed(0)
    x0, z_c, eps = (torch.randn(2, 32, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    a_s = a[[300, 600]]
    assert torch.allclose(cdm_forward(x0, z_c, eps, a_s, a_s), start_latent(z_c, eps, a_s), atol=1e-12)
    # at any t it is the standard forward process of x0 with the effective noise
    e = effective_noise(x0, z_c, eps, a_s)
    a_t = a[[10, 200]]
    want = a_t.sqrt()[:, None, None, None] * x0 + (1 - a_t).sqrt()[:, None, None, None] * e
    assert torch.allclose(cdm_forward(x0, z_c, eps, a_t, a_s), want, atol=1e-12)


def test_ddim_with_perfect_x0_recovers_x0():
    a = alphas_cumprod()
    g = torch.Generator().manual_seed(1)
    x0, z_c, eps = (torch.randn(1, 32, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    t0 = 400
    x = start_latent(z_c, eps, a[[t0]])
    e = effective_noise(x0, z_c, eps, a[[t0]])
    ts = ddim_timesteps(t0, 4)
    assert ts == [400, 300, 200, 100]
    ddim = DDIM(a)
    for i, t in enumerate(ts):
        # the oracle x0 prediction, and the trajectory stays on the forward process with noise e
        assert torch.allclose(x, a[t].sqrt() * x0 + (1 - a[t]).sqrt() * e, atol=1e-10)
        x = ddim.step(x, x0, t, ts[i + 1] if i + 1 < len(ts) else -1)
    assert torch.equal(x, x0)


def test_untrained_decoder_returns_z_c():
    torch.manual_seed(0)
    dec = DiffusionDecoder(TINY).eval()
    z_c = torch.randn(1, 32, 16, 16)
    assert torch.equal(refine(dec, z_c, 100, 0, 0), z_c)
    assert torch.allclose(refine(dec, z_c, 100, 3, 0), z_c, atol=1e-6)


def _trained_ish(seed=0):
    torch.manual_seed(seed)
    dec = DiffusionDecoder(TINY).eval()
    with torch.no_grad():
        for p in dec.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return dec


def test_refine_is_deterministic_and_seeded():
    dec = _trained_ish()
    z_c = torch.randn(1, 32, 16, 16, generator=torch.Generator().manual_seed(2))
    a, b = refine(dec, z_c, 50, 4, 123), refine(dec, z_c, 50, 4, 123)
    assert torch.equal(a, b)
    assert not torch.equal(a, refine(dec, z_c, 50, 4, 124))
    assert seed_from_bytes(b"abc") == seed_from_bytes(b"abc") != seed_from_bytes(b"abd")


def test_store_round_trip_and_hash_check(tmp_path):
    dec = _trained_ish()
    dec.t_start.copy_(torch.arange(256).flip(0) + 100)
    save_decoder(dec, tmp_path, {"default_decoder": "diffusion"})
    got, cfg = load_decoder(str(tmp_path))
    assert cfg["default_decoder"] == "diffusion" and torch.equal(got.t_start, dec.t_start)
    z_c = torch.randn(1, 32, 16, 16)
    ref = DiffusionDecoder(TINY)
    ref.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in dec.state_dict().items()})
    assert torch.equal(refine(got, z_c, 7, 2, 1), refine(ref.eval(), z_c, 7, 2, 1))
    bad = tmp_path / "bad"
    save_decoder(dec, bad)
    (bad / "decoder.safetensors").write_bytes((bad / "decoder.safetensors").read_bytes()[:-1] + b"\0")
    with pytest.raises(WeightsError, match="sha256"):
        load_decoder(str(bad))


def test_train_decoder_resume_and_export(tmp_path, tiny_model_dir):
    from test_train import fake_latents

    from ulic.train import export, train_decoder

    lat = tmp_path / "lat.safetensors"
    fake_latents(lat)
    run = tmp_path / "run"
    common = [
        "--latents",
        str(lat),
        "--model",
        str(tiny_model_dir),
        "--run",
        str(run),
        "--batch",
        "2",
        "--ckpt-every",
        "2",
        "--no-weights",
        "--config",
        json.dumps(TINY.as_dict()),
    ]
    assert train_decoder.main(common + ["--steps", "2"]) == 0
    assert train_decoder.main(common + ["--steps", "4"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 4]
    out = tmp_path / "model"
    cfg = export.export_decoder(run / "checkpoint.safetensors", out, "diffusion")
    t = cfg["t_start"]
    assert len(t) == 256 and all(a >= b for a, b in zip(t, t[1:], strict=False))  # lower rate, later start
    assert load_decoder(str(out))[0].t_start.tolist() == t
    run2 = tmp_path / "run2"  # fine-tune the exported decoder: same weights at step 0
    assert (
        train_decoder.main(
            common[:4]
            + ["--run", str(run2), "--batch", "2", "--no-weights", "--init", str(out), "--steps", "1", "--lr", "0"]
        )
        == 0
    )
    from safetensors.torch import load_file

    t2 = load_file(str(run2 / "checkpoint.safetensors"))
    ref = load_decoder(str(out))[0].state_dict()
    assert all(torch.equal(t2[f"model.{k}"], v) for k, v in ref.items() if k != "t_start")


@pytest.fixture(scope="module")
def tiny_model_with_decoder(tmp_path_factory):
    from conftest import make_tiny_codec

    from ulic.model_store import load_model, save_model

    d = tmp_path_factory.mktemp("tiny_with_decoder")
    save_model(make_tiny_codec(), d, "tiny-test")
    save_decoder(_trained_ish(), d, {"default_decoder": "diffusion", "default_steps": 2})
    return load_model(str(d))


@needs_vae
def test_api_decoder_choice(tiny_model_with_decoder, tiny_model, photo):
    from ulic import api
    from ulic.errors import UlicError

    m = tiny_model_with_decoder
    data = api.encode(photo[:64, :96].copy(), quality=40, model=m).data
    d = api.decode(data, model=m)
    assert (d.decoder, d.steps) == ("diffusion", 2) and d.image.shape == (1, 3, 64, 96)
    assert torch.equal(d.image, api.decode(data, model=m).image)  # reproducible
    f = api.decode(data, model=m, decoder="fast")
    assert (f.decoder, f.steps) == ("fast", 0) and not torch.equal(f.image, d.image)
    assert api.decode(data, model=m, decoder="diffusion", steps=3).steps == 3
    z = api.decode(data, model=m, decoder="mse")  # the stage-1 latent, untouched
    assert (z.decoder, z.steps) == ("mse", 0)
    plain = api.encode(photo[:64, :96].copy(), quality=40, model=tiny_model).data
    assert plain == data  # same codec weights: the decoder file does not change the bitstream
    assert torch.equal(z.image, api.decode(plain, model=tiny_model).image)  # no stage 2 = z_c
    assert api.decode(plain, model=tiny_model, decoder="mse").decoder == "mse"
    with pytest.raises(UlicError, match="decoder must be"):
        api.decode(data, model=m, decoder="slow")
    with pytest.raises(UlicError, match="steps"):
        api.decode(data, model=m, decoder="diffusion", steps=0)
    with pytest.raises(UlicError, match="no diffusion decoder"):
        api.decode(plain, model=tiny_model, decoder="diffusion")
