"""The Pillow plugin (ulic.pillow): registration, round trips through Image.save / Image.open, and
decoder options."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import needs_vae
from PIL import Image, UnidentifiedImageError

import ulic.pillow
from ulic import api
from ulic.errors import BitstreamError
from ulic.imageio import load_image

ulic.pillow.unregister()  # importing registers the format; only this module's tests need it


@pytest.fixture(autouse=True, scope="module")
def plugin():
    ulic.pillow.register()
    yield
    ulic.pillow.unregister()


def test_format_is_registered():
    assert Image.registered_extensions()[".ulic"] == "ULIC"
    assert Image.MIME["ULIC"] == "image/x-ulic"
    assert "ULIC" in Image.SAVE and "ULIC" in Image.OPEN


def test_unregister_restores_pillow():
    ulic.pillow.unregister()
    try:
        assert ".ulic" not in Image.registered_extensions() and "ULIC" not in Image.OPEN
    finally:
        ulic.pillow.register()


def test_other_bytes_are_not_claimed():
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"\x00\x01 not an image at all"))
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"\xe2"), formats=["ULIC"])  # magic alone: truncated header


@pytest.fixture(scope="module")
def saved(photo, tmp_path_factory) -> tuple[Image.Image, bytes]:
    path = tmp_path_factory.mktemp("pillow") / "photo.ulic"
    original = Image.fromarray(photo)
    original.save(path, quality=60)  # format chosen by the extension
    return original, path.read_bytes()


@needs_vae
def test_round_trip_through_pillow(saved, tmp_path):
    original, data = saved
    assert data == api.compress(original, quality=60)  # the plugin writes what the API writes
    (tmp_path / "a.ulic").write_bytes(data)
    im = Image.open(tmp_path / "a.ulic")
    assert (im.format, im.mode, im.size) == ("ULIC", "RGB", original.size)
    assert im.info["ulic_bytes"] == len(data)
    im.load()
    assert im.info["ulic_decoder"] == api.decode(data).decoder
    assert np.array_equal(np.asarray(im), np.asarray(api.decompress(data)))
    assert api.psnr(load_image(original), load_image(im)) > 15


@needs_vae
def test_decoder_options(saved):
    _, data = saved
    im = ulic.pillow.open(io.BytesIO(data), decoder="mse")
    assert np.array_equal(np.asarray(im), np.asarray(api.decompress(data, decoder="mse")))
    assert (im.info["ulic_decoder"], im.info["ulic_steps"]) == ("mse", 0)
    fast = Image.open(io.BytesIO(data)).configure(decoder="fast")
    fast.load()
    assert fast.info["ulic_decoder"] == "fast"
    with pytest.raises(ValueError, match="before the image is loaded"):
        fast.configure(decoder="mse")


@needs_vae
def test_save_rate_options(photo):
    img = Image.fromarray(photo)
    buf = io.BytesIO()
    img.save(buf, format="ULIC", max_bytes=300)
    assert len(buf.getvalue()) <= 300
    buf = io.BytesIO()
    img.convert("L").save(buf, format="ULIC", bpp=0.05)
    assert Image.open(io.BytesIO(buf.getvalue())).size == img.size


@needs_vae
def test_corrupt_file_fails_on_load_with_a_clear_error(saved):
    _, data = saved
    bad = data[:-1] + bytes([data[-1] ^ 0xFF])
    im = Image.open(io.BytesIO(bad))
    with pytest.raises(BitstreamError, match="integrity check failed"):
        im.load()
