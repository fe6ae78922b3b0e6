"""Whole pipeline with the real TAEF2 and a tiny seeded codec: sizes, modes, rate control."""

import io

import numpy as np
import pytest
import torch
from conftest import needs_vae
from PIL import Image

from ulic import api
from ulic.errors import BitstreamError, InputImageError, UlicError

pytestmark = needs_vae


def png_bytes(img: Image.Image, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, format=kw.pop("format", "PNG"), **kw)
    return b.getvalue()


@pytest.mark.parametrize("h,w", [(16, 16), (17, 130), (128, 192)])
def test_round_trip_sizes(tiny_model, photo, h, w):
    r = api.encode(photo[:h, :w].copy(), quality=60, model=tiny_model)
    assert r.bpp == 8 * len(r.data) / (h * w)
    d = api.decode(r.data, model=tiny_model)
    assert d.image.shape == (1, 3, h, w)
    assert (d.header.height, d.header.width, d.header.quality) == (h, w, r.quality)


def test_decode_twice_identical(tiny_model, photo):
    data = api.encode(photo, quality=50, model=tiny_model).data
    a = api.decode(data, model=tiny_model).image
    b = api.decode(data, model=tiny_model).image
    assert torch.equal(a, b)


def test_bpp_target_within_tolerance(tiny_model, photo):
    coder_rate = 8 * len(api.encode(photo, quality=70, model=tiny_model).data) / photo[..., 0].size
    target = coder_rate * 1.01
    r = api.encode(photo, bpp=target, model=tiny_model)
    assert abs(r.bpp - target) <= 0.03 * target


def test_bpp_outside_range_is_an_error(tiny_model, photo):
    with pytest.raises(UlicError, match="outside"):
        api.encode(photo, bpp=50.0, model=tiny_model)


def test_max_bytes_is_largest_that_fits(tiny_model, photo):
    big = len(api.encode(photo, quality=80, model=tiny_model).data)
    r = api.encode(photo, max_bytes=big - 1, model=tiny_model)
    assert len(r.data) <= big - 1
    if r.quality < 255:
        nxt = api.encode(photo, quality=(r.quality + 1) / 255 * 100, model=tiny_model)
        assert len(nxt.data) > big - 1 or nxt.quality == r.quality
    with pytest.raises(UlicError, match="cannot fit"):
        api.encode(photo, max_bytes=5, model=tiny_model)


def test_rgba_drops_alpha_with_notice(tiny_model, photo):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 7, np.uint8)])
    r = api.encode(png_bytes(Image.fromarray(rgba, "RGBA")), quality=50, model=tiny_model)
    assert any("alpha" in n for n in r.notices)
    ref = api.encode(photo, quality=50, model=tiny_model)
    assert r.data == ref.data  # colour channels coded unchanged


def test_grayscale_and_16bit(tiny_model, photo):
    gray = photo.mean(-1).astype(np.uint8)
    a = api.encode(png_bytes(Image.fromarray(gray, "L")), quality=50, model=tiny_model)
    b = api.encode(png_bytes(Image.fromarray(gray.astype(np.uint16) * 257)), quality=50, model=tiny_model)
    assert a.data == b.data  # 16-bit reduced to the same 8-bit image
    assert api.decode(a.data, model=tiny_model).image.shape[1] == 3


def test_exif_rotation_applied(tiny_model, photo):
    img = Image.fromarray(photo)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    r = api.encode(png_bytes(img, format="JPEG", exif=exif, quality=95), quality=50, model=tiny_model)
    assert (r.height, r.width) == (photo.shape[1], photo.shape[0])


def test_palette_image(tiny_model, photo):
    p = Image.fromarray(photo).convert("P")
    assert api.encode(png_bytes(p), quality=10, model=tiny_model).width == photo.shape[1]


@pytest.mark.parametrize(
    "blob,msg",
    [
        (b"", "empty|cannot read|not a readable"),
        (b"not an image at all", "not a readable"),
        (png_bytes(Image.new("RGB", (15, 15))), "at least 16x16"),
    ],
)
def test_bad_images(tiny_model, blob, msg, tmp_path):
    p = tmp_path / "in.png"
    p.write_bytes(blob)
    with pytest.raises(InputImageError, match=msg):
        api.encode(p, model=tiny_model)


def test_truncated_png(tiny_model, photo, tmp_path):
    p = tmp_path / "t.png"
    p.write_bytes(png_bytes(Image.fromarray(photo))[:300])
    with pytest.raises(InputImageError):
        api.encode(p, model=tiny_model)


def test_huge_dimensions_rejected(tiny_model, monkeypatch, tmp_path):
    monkeypatch.setenv("ULIC_MAX_PIXELS", "10000")
    p = tmp_path / "big.png"
    Image.new("RGB", (200, 200)).save(p)
    with pytest.raises(InputImageError, match="limit"):
        api.encode(p, model=tiny_model)


def test_corrupt_files_rejected(tiny_model, photo):
    data = api.encode(photo, quality=50, model=tiny_model).data
    rng = np.random.default_rng(0)
    for n in range(0, len(data), max(1, len(data) // 40)):
        with pytest.raises(BitstreamError):
            api.decode(data[:n], model=tiny_model)
    for _ in range(50):
        bad = bytearray(data)
        bad[rng.integers(len(bad))] ^= 1 << int(rng.integers(8))
        with pytest.raises(BitstreamError):
            api.decode(bytes(bad), model=tiny_model)
    with pytest.raises(BitstreamError):
        api.decode(rng.bytes(300), model=tiny_model)
