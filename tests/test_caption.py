"""The optional caption section: stored as UTF-8, every byte counted, shown by `ulic info`,
hostile extra sections rejected before any decoding work."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from ulic import api, bitstream
from ulic.errors import BitstreamError, UlicError


def test_caption_round_trips_and_counts_in_the_rate(tiny_model, photo):
    plain = api.encode(photo, quality=50, model=tiny_model)
    text = "Hafen bei Nacht — 港 🌙"
    r = api.encode(photo, quality=50, model=tiny_model, caption=text)
    extra = len(r.data) - len(plain.data)
    assert extra == len(text.encode()) + 1 + 2  # kind byte, section count, one section length
    assert r.bpp == 8 * len(r.data) / (r.height * r.width)
    d = api.decode(r.data, model=tiny_model)
    assert d.caption == text and api.decode(plain.data, model=tiny_model).caption is None
    assert (d.image - api.decode(plain.data, model=tiny_model).image).abs().max() == 0


def test_rate_target_includes_the_caption(tiny_model, photo):
    long = "x" * 200
    r = api.encode(photo, max_bytes=400, model=tiny_model, caption=long)
    assert len(r.data) <= 400 and api.decode(r.data, model=tiny_model).caption == long


@pytest.mark.parametrize("bad", ["", "a" * 1025, "\ud800"])
def test_bad_captions_are_refused_before_work(tiny_model, photo, bad):
    with pytest.raises(UlicError, match="caption"):
        api.encode(photo, quality=50, model=tiny_model, caption=bad)


@pytest.mark.parametrize(
    "extra, message",
    [
        (b"\x09hello", "unknown section kind"),
        (b"", "empty extra section"),
        (b"\x01\xff\xfe", "not UTF-8"),
        (b"\x01" + b"a" * 1025, "caption of 1025 bytes"),
    ],
)
def test_hostile_extra_sections_are_rejected(tiny_model, photo, extra, message):
    r = api.encode(photo, quality=50, model=tiny_model)
    c = bitstream.parse(r.data, tiny_model.fingerprint)
    forged = bitstream.Container(c.height, c.width, c.quality, None, [c.sections[0], extra]).to_bytes(
        tiny_model.fingerprint
    )
    with pytest.raises(BitstreamError, match=message):
        api.decode(forged, model=tiny_model)


def test_two_captions_are_rejected(tiny_model, photo):
    r = api.encode(photo, quality=50, model=tiny_model)
    c = bitstream.parse(r.data, tiny_model.fingerprint)
    two = [c.sections[0], b"\x01a", b"\x01b"]
    forged = bitstream.Container(c.height, c.width, c.quality, None, two).to_bytes(tiny_model.fingerprint)
    with pytest.raises(BitstreamError, match="two caption sections"):
        api.decode(forged, model=tiny_model)


def test_cli_caption_and_info(cli, tmp_path, photo):
    src = tmp_path / "a.png"
    Image.fromarray(photo).save(src)
    assert cli("compress", src, "-o", tmp_path / "a.ulic", "--caption", "two boats").rc == 0
    r = cli("info", tmp_path / "a.ulic")
    info = json.loads(r.out)
    assert info["caption"] == "two boats" and info["caption_bytes"] == 10 and len(info["sections"]) == 2
    assert cli("decompress", tmp_path / "a.ulic", "-o", tmp_path / "a.png2.png").rc == 0
    r = cli("compress", src, "-o", tmp_path / "b.ulic", "--caption", "")
    assert r.rc == 2 and "caption" in r.err and not (tmp_path / "b.ulic").exists()
