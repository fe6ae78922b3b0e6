"""Bounds on the work an input can cause, checked before anything is allocated.

- Pixels: the codec pads every image to multiples of 128 before any network runs, so the limit
  (`ULIC_MAX_PIXELS`, default 64 Mpixel) applies to the padded size; a 1x67,108,864 strip pads
  to 128x67,108,864 and is refused.
- Shape: padded sides at most MAX_ASPECT times apart.
- .ulic length: the header's size fixes how many symbols the file codes. Every symbol costs at
  least -log2 of its table's largest probability, so a file shorter than that sum (less a
  flush allowance) cannot hold the image it declares and is refused before decoding; a file
  longer than 32 bits per symbol plus the header cannot be a ulic file either, and is not read
  past that length.
- Inputs named by path must be regular files (a FIFO is also accepted for .ulic files, read
  up to the length bound); devices, sockets and folders are refused.
"""

from __future__ import annotations

import math
import os
import stat
from functools import lru_cache
from pathlib import Path

from ulic import bitstream
from ulic.errors import BitstreamError, InputImageError, UlicError

DEFAULT_MAX_PIXELS = 64 * 1024 * 1024  # ULIC_MAX_PIXELS overrides
PAD = 128  # LatentCodec.cfg.downsample: images are padded to multiples of this
MAX_ASPECT = 256  # longest padded side / shortest padded side
FLUSH_BYTES = 16  # a range coder's output may end this much before the information bound
MAX_SYMBOL_BITS = 32  # constriction's models give every symbol a probability >= 2**-24
HEADER_BYTES = 64  # more than any header: lead, two 5-byte varints, quality, sections, check
PEEK_BYTES = 32  # enough for the lead byte(s) and both size varints


def max_pixels() -> int:
    """The pixel limit (of the padded image): ULIC_MAX_PIXELS, default 64 Mpixel."""
    raw = os.environ.get("ULIC_MAX_PIXELS", str(DEFAULT_MAX_PIXELS))
    try:
        limit = int(raw)
    except ValueError:
        raise UlicError(f"ULIC_MAX_PIXELS must be a whole number, got {raw!r}") from None
    if limit < 1:
        raise UlicError(f"ULIC_MAX_PIXELS must be positive, got {limit}")
    return limit


def padded(height: int, width: int, multiple: int = PAD) -> tuple[int, int]:
    """(height, width) rounded up to multiples of `multiple`."""
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def check_size(
    height: int, width: int, error: type[UlicError] = InputImageError, what: str = "image", multiple: int = PAD
) -> None:
    """Raise `error` unless the padded image is within the pixel limit and aspect ratio."""
    hp, wp = padded(height, width, multiple)
    limit = max_pixels()
    if hp * wp > limit:
        raise error(
            f"{what} {width}x{height} ({wp}x{hp} padded to multiples of {multiple}) "
            f"exceeds the limit of {limit} pixels (set ULIC_MAX_PIXELS to raise it)"
        )
    if max(hp, wp) > MAX_ASPECT * min(hp, wp):
        raise error(
            f"{what} {width}x{height} is too elongated: padded sides more than "
            f"{MAX_ASPECT} times apart are not supported"
        )


@lru_cache(maxsize=8)
def _symbol_bits(codec) -> tuple[float, float]:
    """(fewest bits of one z position, all channels; fewest bits of one y symbol) for a codec."""
    st = codec.coding

    def least(table) -> float:
        t = table.double()
        return float(-math.log2(float(t.max()) / float(t.sum())))

    return sum(least(t) for t in st.z_tables), min(least(t) for t in st.y_tables)


def coded_bytes_bounds(codec, height: int, width: int) -> tuple[int, int]:
    """(fewest, most) bytes that the entropy-coded data of a height x width image can take."""
    hp, wp = padded(height, width, codec.cfg.downsample)
    z_positions = (hp // codec.cfg.downsample) * (wp // codec.cfg.downsample)
    y_symbols = codec.cfg.m * (hp * 4 // codec.cfg.downsample) * (wp * 4 // codec.cfg.downsample)
    z_bits, y_bits = _symbol_bits(codec)
    fewest = math.floor((z_positions * z_bits + y_symbols * y_bits) / 8) - FLUSH_BYTES
    most = (z_positions * codec.cfg.cz + y_symbols) * MAX_SYMBOL_BITS // 8 + FLUSH_BYTES
    return max(0, fewest), most


def container_bounds(head: bytes, codec) -> tuple[int, int, int, int]:
    """(height, width, fewest, most) bytes for a .ulic file that starts with `head`; raises
    BitstreamError for a bad magic byte, a truncated header or an image over the limits."""
    height, width = bitstream.peek_size(head)
    if height < 1 or width < 1:
        raise BitstreamError("malformed header (zero image size)")
    check_size(height, width, BitstreamError, "image size in header", codec.cfg.downsample)
    fewest, most = coded_bytes_bounds(codec, height, width)
    return height, width, fewest, most + HEADER_BYTES + bitstream.MAX_EXTRA_BYTES


def _check_length(length: int, bounds: tuple[int, int, int, int], name: str | None, at_least: bool = True) -> None:
    height, width, fewest, most = bounds
    prefix = f"{name}: " if name else ""
    if at_least and length < fewest:
        raise BitstreamError(
            f"{prefix}file is truncated: a {width}x{height} image needs at least "
            f"{fewest} bytes, the file has {length}"
        )
    if length > most:
        raise BitstreamError(
            f"{prefix}file is {length} bytes, more than a {width}x{height} image " f"can take ({most})"
        )


def check_container_length(data: bytes, codec) -> None:
    """Raise BitstreamError unless the file's length can be that of the image its header declares."""
    _check_length(len(data), container_bounds(data[:PEEK_BYTES], codec), None)


def stat_input(path: str | Path, error: type[UlicError], allow_fifo: bool = False) -> os.stat_result:
    """stat() of an input path; raises `error` unless it is a regular file (or a FIFO)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise error(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a directory")
    if not (stat.S_ISREG(st.st_mode) or (allow_fifo and stat.S_ISFIFO(st.st_mode))):
        raise error(f"{path}: not a regular file")
    return st


def read_container(path: str | Path, codec) -> bytes:
    """A .ulic file's bytes, read no further than its header's image can need: magic and size
    are checked on the first bytes, and a file too long for them is refused from its size (a
    FIFO: after reading one byte more than the bound). Too short a file is read (`ulic info`
    shows its header); decoding refuses it."""
    st = stat_input(path, BitstreamError, allow_fifo=True)
    try:
        with open(path, "rb") as f:
            head = f.read(PEEK_BYTES)
            bounds = container_bounds(head, codec)
            if stat.S_ISREG(st.st_mode):
                _check_length(st.st_size, bounds, str(path), at_least=False)
            data = head + f.read(bounds[3] + 1 - len(head))
    except OSError as e:
        raise BitstreamError(f"{path}: cannot read ({e.strerror or e})") from None
    _check_length(len(data), bounds, str(path), at_least=False)
    return data
