"""Hostile inputs, tiled VAE, fuzzing, exact entropy decoding and batches that lose nothing."""

import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import needs_vae
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ulic import api, bitstream
from ulic.errors import BitstreamError, InputImageError, UlicError
from ulic.imageio import save_atomic
from ulic.tools.fuzz import make_png

pytestmark = needs_vae


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, format=fmt, **kw)
    return b.getvalue()


# -- hostile images ---------------------------------------------------------------------------
def test_animated_gif_uses_first_frame(tiny_model, photo):
    frames = [Image.fromarray(photo), Image.fromarray(255 - photo)]
    b = io.BytesIO()
    frames[0].save(b, format="GIF", save_all=True, append_images=frames[1:])
    r = api.encode(b.getvalue(), quality=20, model=tiny_model)
    assert any("2 frames" in n for n in r.notices)
    assert (r.height, r.width) == photo.shape[:2]


def test_cmyk_jpeg(tiny_model, photo):
    data = png_bytes(Image.fromarray(photo).convert("CMYK"), "JPEG", quality=95)
    assert api.encode(data, quality=20, model=tiny_model).width == photo.shape[1]


@pytest.mark.parametrize("size", [(1, 1), (15, 15), (16, 15), (1, 4000)])
def test_too_small(tiny_model, size):
    with pytest.raises(InputImageError, match="at least 16x16"):
        api.encode(png_bytes(Image.new("RGB", size)), model=tiny_model)


def test_16_bit_rgb_png(tiny_model, photo):
    """A 48-bit RGB PNG is read as 8-bit RGB (its high bytes)."""
    a = photo[:32, :48].astype(">u2") * 257
    rows = b"".join(b"\0" + a[i].tobytes() for i in range(a.shape[0]))
    x = api.load_image(make_png(48, 32, rows, 16, 2))
    assert x.shape == (1, 3, 32, 48)
    got = (x[0].permute(1, 2, 0) * 255).round().numpy().astype(int)
    assert np.abs(got - photo[:32, :48]).max() <= 1
    assert api.encode(make_png(48, 32, rows, 16, 2), quality=20, model=tiny_model).width == 48


def test_huge_header_is_refused_before_decoding(tiny_model):
    """A PNG whose header claims 100000x100000 pixels is refused without allocating them."""
    with pytest.raises(InputImageError, match="limit"):
        api.encode(make_png(100000, 100000, b"\0" * 100), model=tiny_model)


# -- tiled VAE ----------------------------------------------------------------------------------
def test_tiled_vae_equals_one_pass(photo):
    from ulic.vae.tiling import decode_tiled, encode_tiled
    from ulic.vae.weights import load_vae

    vae = load_vae()
    x = torch.from_numpy(photo[:128, :192].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        a, b = vae.encoder(x), encode_tiled(vae.encoder, x, tile=64)
        assert torch.equal(a, b)  # the encoder's tiled part is bit-exact here
        da, db = vae.decoder(a), decode_tiled(vae.decoder, a, tile=64)
    assert (da - db).abs().max() < 1e-3  # float summation order only
    assert ((da.clamp(0, 1) * 255).round() != (db.clamp(0, 1) * 255).round()).float().mean() < 1e-3


# -- hostile bitstreams ---------------------------------------------------------------------------
def test_fuzz_campaign_short(tiny_model, monkeypatch):
    """A short run of the campaign in ulic.tools.fuzz: no crashes, no hangs."""
    from ulic.tools.fuzz import run_campaign, seed_files

    monkeypatch.setenv("ULIC_MAX_PIXELS", str(256 * 256))
    rep = run_campaign(seed_files(tiny_model, sizes=((64, 96), (130, 17))), tiny_model, n=120, hang_s=10)
    assert rep.crashes == [] and rep.hangs == []
    assert rep.outcomes.get("image", 0) > 0 and rep.outcomes.get("BitstreamError", 0) > 0
    assert all(rep.tried[k] == 15 for k in rep.tried)  # every kind, in turn
    assert rep.by_kind["png"].get("InputImageError", 0) > 0
    report = rep.as_dict()
    assert report["max_rss_mb"] > 0 and report["inputs_per_s"] > 0


def test_image_fuzz_kinds_are_cheap_and_never_crash(tiny_model, monkeypatch):
    """The image kinds alone (no codec work): many inputs, some valid images among them."""
    from ulic.tools.fuzz import run_campaign

    monkeypatch.setenv("ULIC_MAX_PIXELS", str(512 * 512))
    rep = run_campaign([], tiny_model, n=600, kinds=("png", "image"))
    assert rep.crashes == [] and rep.hangs == []
    assert rep.by_kind["png"].get("image", 0) > 0 and rep.by_kind["image"].get("image", 0) > 0


def test_structure_aware_mutations_keep_the_check_valid(tiny_model):
    """`size` inputs carry a valid check, so they reach the size and length checks."""
    import random

    from ulic.tools.fuzz import mutate_size, seed_files

    seeds = seed_files(tiny_model, sizes=((64, 96),), qualities=(50,))
    rng = random.Random(0)
    for _ in range(50):
        data = mutate_size(seeds[0], rng, tiny_model.fingerprint, 256 * 256)
        c = bitstream.parse(data, tiny_model.fingerprint)  # the check holds
        assert c.height >= 1 and c.width >= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), lead=st.sampled_from(["", "v1", "v2"]))
def test_decoder_never_crashes_on_arbitrary_bytes(tiny_model, data, lead):
    prefix = {
        "": b"",
        "v1": bitstream.MAGIC + bytes([1, tiny_model.model_id]),
        "v2": bytes([bitstream.LEAD_MAGIC | bitstream.FORMAT_VERSION]),
    }[lead]
    raw = prefix + data
    try:
        d = api.decode(raw, model=tiny_model)
    except BitstreamError:
        return
    assert d.image.shape[2:] == (d.header.height, d.header.width)


def test_header_pixel_limit_configurable(tiny_model, photo, monkeypatch):
    data = api.encode(photo, quality=10, model=tiny_model).data
    monkeypatch.setenv("ULIC_MAX_PIXELS", "100")
    with pytest.raises(BitstreamError, match="exceeds the limit"):
        api.decode(data, model=tiny_model)


# -- exact entropy decoding -------------------------------------------------------------------
def test_entropy_parameters_independent_of_float_precision_and_threads(tiny_model, photo):
    """The z -> table-index path is integer/exact: float64 vs float32 evaluation of the other
    networks and 1 vs 2 threads give identical indexes and identical y_hat."""
    codec = tiny_model.codec
    z_hat = torch.randint(-6, 7, (1, codec.cfg.cz, 3, 5))
    ref = [codec.entropy_params(z_hat, q) for q in (0, 128, 255)]
    n = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.autocast("cpu", enabled=False):
                for (mean, idx), q in zip(ref, (0, 128, 255), strict=False):
                    m2, i2 = codec.entropy_params(z_hat, q)
                    assert torch.equal(idx, i2) and torch.equal(mean, m2)
    finally:
        torch.set_num_threads(n)
    codec_f64 = type(codec)(codec.cfg)
    codec_f64.load_state_dict(codec.state_dict())
    codec_f64.coding = codec.coding
    codec_f64.double()
    for (mean, idx), q in zip(ref, (0, 128, 255), strict=False):
        m2, i2 = codec_f64.entropy_params(z_hat, q)
        assert torch.equal(idx, i2) and torch.equal(mean, m2)


# -- atomic writes and batches --------------------------------------------------------------------
def test_save_atomic_leaves_no_temp(tmp_path):
    save_atomic(b"abc", tmp_path / "a.ulic")
    save_atomic(Image.new("RGB", (4, 4)), tmp_path / "a.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.ulic"]


def _cli(*args, env=None):
    e = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "ulic.cli", *map(str, args)], capture_output=True, text=True, env=e, timeout=300
    )


@pytest.fixture
def image_dir(tmp_path, photo):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.roll(photo, 7 * i, axis=1)[:64, :96]).save(d / f"img{i}.png")
    Image.fromarray(photo[:64, :96]).save(d / "sub" / "deep.jpg")
    (d / "broken.png").write_bytes(b"\x89PNG garbage")
    (d / "notes.txt").write_text("not an image")
    return d


def test_compress_dir_continues_past_errors_and_skips_done(tiny_model_dir, image_dir, tmp_path):
    env = {"ULIC_MODEL_DIR": str(tiny_model_dir)}
    out = tmp_path / "out"
    r = _cli("compress-dir", image_dir, "-o", out, "--quality", "30", env=env)
    assert r.returncode == 1, r.stderr  # one file failed, the others are done
    assert "4 done, 0 skipped, 1 failed" in r.stderr and "broken.png" in r.stderr
    assert "Traceback" not in r.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["img0.ulic", "img1.ulic", "img2.ulic", "sub/deep.ulic"]
    r = _cli("compress-dir", image_dir, "-o", out, "--quality", "30", env=env)
    assert "0 done, 4 skipped, 1 failed" in r.stderr
    png = tmp_path / "png"
    r = _cli("decompress-dir", out, "-o", png, env=env)
    assert r.returncode == 0 and "4 done" in r.stderr
    assert Image.open(png / "sub" / "deep.png").size == (96, 64)


def test_kill_9_loses_nothing_and_leaves_no_partial_files(tiny_model_dir, photo, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(12):
        Image.fromarray(np.roll(photo, 5 * i, axis=0)).save(src / f"i{i:02d}.png")
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", ULIC_MODEL_DIR=str(tiny_model_dir))
    p = subprocess.Popen(
        [sys.executable, "-m", "ulic.cli", "compress-dir", src, "-o", out, "--quality", "40", "--optimize", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.ulic"))) < 3:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = sorted(out.iterdir())
    assert all(not f.name.startswith(".") for f in done), done  # no temporary files left
    for f in done:  # everything present is complete
        api.decode(f.read_bytes(), model=_load(tiny_model_dir))
    r = _cli(
        "compress-dir",
        src,
        "-o",
        out,
        "--quality",
        "40",
        "--optimize",
        "2",
        env={"ULIC_MODEL_DIR": str(tiny_model_dir)},
    )
    assert r.returncode == 0, r.stderr
    assert f"{12 - len(done)} done, {len(done)} skipped, 0 failed" in r.stderr
    assert len(list(out.glob("*.ulic"))) == 12


def _load(d):
    from ulic.model_store import load_model

    return load_model(str(d))


def test_stale_temp_files_removed_on_rerun(tiny_model_dir, image_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".img0.ulic.ulic-tmp-999999.tmp"
    stale.write_bytes(b"partial")
    _cli("compress-dir", image_dir, "-o", out, "--quality", "30", env={"ULIC_MODEL_DIR": str(tiny_model_dir)})
    assert not stale.exists()


def test_decoder_errors_are_ulic_errors(tiny_model):
    with pytest.raises(UlicError):
        api.decode(b"UL\x01", model=tiny_model)


# -- safe loading -----------------------------------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pth_loading_runs_no_code(tmp_path, monkeypatch):
    """TAEF2 .pth files are read with weights_only=True: a pickle that calls code is refused."""
    import pickle

    from ulic.vae.taef2 import TAEF2

    monkeypatch.chdir(tmp_path)
    p = tmp_path / "evil.pth"
    p.write_bytes(pickle.dumps({"0.weight": _Evil()}))
    with pytest.raises(pickle.UnpicklingError):
        TAEF2(encoder_path=p)
    assert not (tmp_path / "pwned-by-pickle").exists()


def test_weights_with_wrong_hash_refused(tmp_path):
    from ulic.errors import WeightsError
    from ulic.vae.weights import find_weight

    (tmp_path / "taef2_encoder.pth").write_bytes(b"not the pinned file")
    with pytest.raises(WeightsError, match="sha256"):
        find_weight("taef2_encoder.pth", tmp_path, allow_download=False)
