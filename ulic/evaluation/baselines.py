"""Classical codecs at ultra-low rates: downscale, encode, decode, upscale.

A setting is "<codec>:d<factor>:q<quality>": the image is downscaled by `factor` (1 or more,
fractional allowed; Lanczos, sizes rounded), encoded at `quality`, decoded, and upscaled back
to the original size (Lanczos). The rate counts the codec payload (see `containers`) plus 4
bytes of side information (the original width and height as 16-bit numbers) whenever factor > 1;
bpp = 8 * bytes / (H * W) of the original.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ulic.errors import UlicError
from ulic.evaluation import containers

SIDE_INFO_BYTES = 4
MIN_SIDE = 16  # pixels: the smallest downscaled side the codecs are given

# Settings per codec: (downscale factor, quality), chosen to span about 0.005-0.1 bpp on Kodak.
GRIDS: dict[str, tuple[tuple[int, float], ...]] = {
    "jpeg": ((4, 5), (4, 10), (4, 25), (4, 50), (3, 25), (2, 10)),
    "webp": ((4, 0), (4, 5), (4, 25), (4, 50), (3, 25), (3, 50)),
    "avif": ((4, 0), (4, 15), (4, 25), (3, 25), (4, 45), (2, 25), (3, 45)),
    "hevc": ((4, 0), (4, 10), (4, 25), (3, 25), (2, 25), (3, 40)),
    "jxl": ((4, 25), (4, 14), (4, 8), (3, 8), (2, 14), (3, 4)),  # JPEG XL: quality = butteraugli distance
}


@dataclass
class Coded:
    """One decoded baseline: the reconstruction (H, W, 3) uint8 and the counted payload bytes."""

    image: np.ndarray
    nbytes: int


def setting_name(codec: str, factor: float, quality: float) -> str:
    return f"{codec}:d{factor:g}:q{quality:g}"


def parse_setting(s: str) -> tuple[str, float, float]:
    """'avif:d4:q25' -> ('avif', 4.0, 25.0); factors may be fractional ('hevc:d1.5:q30')."""
    try:
        codec, d, q = s.split(":")
        factor = float(d[1:])
        if codec not in CODECS or d[0] != "d" or q[0] != "q" or not 1 <= factor <= 64:
            raise ValueError
        return codec, factor, float(q[1:])
    except (ValueError, IndexError):
        raise UlicError(
            f"bad baseline setting {s!r}: expected CODEC:dFACTOR:qQUALITY, " f"codec one of {', '.join(CODECS)}"
        ) from None


def default_settings(codec: str) -> list[str]:
    if codec not in GRIDS:
        raise UlicError(f"unknown codec {codec!r}: choose from {', '.join(CODECS)}")
    return [setting_name(codec, f, q) for f, q in GRIDS[codec]]


class ClassicalCodec:
    """One classical codec: `encode` (image -> file bytes and the payload bytes counted) and
    `decode` (file bytes -> RGB image)."""

    name = ""

    def encode(self, im: Image.Image, quality: float) -> tuple[bytes, int]:
        raise NotImplementedError

    def decode(self, data: bytes) -> Image.Image:
        return Image.open(io.BytesIO(data)).convert("RGB")


class Jpeg(ClassicalCodec):
    name = "jpeg"

    def encode(self, im: Image.Image, quality: float) -> tuple[bytes, int]:
        b = io.BytesIO()
        im.save(b, "JPEG", quality=int(quality), optimize=True, subsampling="4:2:0")
        return b.getvalue(), containers.jpeg_payload_bytes(b.getvalue())


class Webp(ClassicalCodec):
    name = "webp"

    def encode(self, im: Image.Image, quality: float) -> tuple[bytes, int]:
        b = io.BytesIO()
        im.save(b, "WEBP", quality=int(quality), method=6)
        return b.getvalue(), len(containers.riff_chunk(b.getvalue(), b"VP8 "))


class Avif(ClassicalCodec):
    name = "avif"

    def encode(self, im: Image.Image, quality: float) -> tuple[bytes, int]:
        b = io.BytesIO()
        im.save(b, "AVIF", quality=int(quality), speed=4, subsampling="4:2:0")
        return b.getvalue(), containers.avif_payload_bytes(b.getvalue())


class Hevc(ClassicalCodec):
    """HEVC intra (x265 through libheif), in a HEIC file."""

    name = "hevc"

    def encode(self, im: Image.Image, quality: float) -> tuple[bytes, int]:
        import pillow_heif

        b = io.BytesIO()
        pillow_heif.from_pillow(im).save(b, quality=int(quality), chroma=420, enc_params={"x265:info": "0"})
        return b.getvalue(), containers.heic_payload_bytes(b.getvalue())

    def decode(self, data: bytes) -> Image.Image:
        import pillow_heif

        return pillow_heif.open_heif(io.BytesIO(data)).to_pillow().convert("RGB")


class Jxl(ClassicalCodec):
    """JPEG XL (libjxl through imagecodecs); quality is the butteraugli distance."""

    name = "jxl"

    def encode(self, im: Image.Image, quality: float) -> tuple[bytes, int]:
        import imagecodecs

        data = bytes(imagecodecs.jpegxl_encode(np.asarray(im), distance=float(quality), effort=7))
        return data, len(data)

    def decode(self, data: bytes) -> Image.Image:
        import imagecodecs

        return Image.fromarray(imagecodecs.jpegxl_decode(data)).convert("RGB")


CLASSICAL: dict[str, ClassicalCodec] = {c.name: c for c in (Jpeg(), Webp(), Avif(), Hevc(), Jxl())}
CODECS = tuple(CLASSICAL)


def run_setting(original: np.ndarray, setting: str) -> Coded:
    """Encode and decode one (H, W, 3) uint8 image at one setting."""
    codec, factor, q = parse_setting(setting)
    h, w = original.shape[:2]
    im = Image.fromarray(original)
    small = (
        im
        if factor == 1
        else im.resize((max(16, round(w / factor)), max(16, round(h / factor))), Image.Resampling.LANCZOS)
    )
    data, nbytes = CLASSICAL[codec].encode(small, q)
    rec = CLASSICAL[codec].decode(data)
    if rec.size != small.size:
        raise UlicError(f"{setting}: decoded size {rec.size} differs from the encoded {small.size}")
    if factor != 1:
        rec = rec.resize((w, h), Image.Resampling.LANCZOS)
        nbytes += SIDE_INFO_BYTES
    return Coded(np.asarray(rec, dtype=np.uint8).copy(), nbytes)
