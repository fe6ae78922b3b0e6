"""Counting only the bytes a decoder needs inside classical image files.

- JPEG: the file without APPn (JFIF/EXIF/ICC) and COM segments: SOI, tables, SOF, SOS, entropy data, EOI.
- WebP: the payload of the 'VP8 ' chunk (the VP8 key frame, which carries its own size); the RIFF
  header (12 B) and chunk header (8 B) are dropped.
- AVIF: the payload of the 'mdat' box (the AV1 OBUs, sequence header included); the HEIF boxes
  (ftyp, meta, iinf, iprp ...) are dropped.
- HEIC (HEVC intra): the VPS/SPS/PPS NAL units from the 'hvcC' box plus the slice NAL units in
  'mdat', each counted with a 3-byte start code as in an Annex-B stream; SEI NAL units (e.g. the
  x265 version string) are dropped.
- JPEG XL: the bare codestream (imagecodecs writes no container), counted whole.
"""

from __future__ import annotations

import struct

from ulic.errors import UlicError


def jpeg_payload_bytes(data: bytes) -> int:
    """Length of a JPEG file without APP0..APP15 and COM segments."""
    if data[:2] != b"\xff\xd8":
        raise UlicError("not a JPEG file")
    i, dropped = 2, 0
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise UlicError("malformed JPEG marker stream")
        marker = data[i + 1]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            break
        seg = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            dropped += 2 + seg
        i += 2 + seg
    return len(data) - dropped


def riff_chunk(data: bytes, fourcc: bytes) -> bytes:
    """Payload of the first RIFF chunk named `fourcc` in a WebP file."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise UlicError("not a WebP file")
    i = 12
    while i + 8 <= len(data):
        name, size = data[i : i + 4], struct.unpack("<I", data[i + 4 : i + 8])[0]
        if name == fourcc:
            return data[i + 8 : i + 8 + size]
        i += 8 + size + (size & 1)
    raise UlicError(f"WebP file has no {fourcc!r} chunk")


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """ISOBMFF boxes in data[start:end] as (type, payload start, payload end)."""
    end = len(data) if end is None else end
    out, i = [], start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        head = 8
        if size == 1:
            size, head = struct.unpack(">Q", data[i + 8 : i + 16])[0], 16
        elif size == 0:
            size = end - i
        if size < head or i + size > end:
            raise UlicError("malformed ISOBMFF box structure")
        out.append((kind, i + head, i + size))
        i += size
    return out


def find_box(data: bytes, path: list[bytes], start: int = 0, end: int | None = None) -> tuple[int, int]:
    """(payload start, end) of the box at `path`, descending into containers (meta has 4 extra bytes)."""
    for kind, s, e in boxes(data, start, end):
        if kind == path[0]:
            if len(path) == 1:
                return s, e
            return find_box(data, path[1:], s + (4 if kind == b"meta" else 0), e)
    raise UlicError(f"box {path[0]!r} not found")


def avif_payload_bytes(data: bytes) -> int:
    """Bytes of AV1 data in the 'mdat' box of an AVIF file."""
    s, e = find_box(data, [b"mdat"])
    return e - s


def _hvcc_nal_units(hvcc: bytes) -> list[bytes]:
    """Parameter-set NAL units listed in an HEVCDecoderConfigurationRecord."""
    i, units = 23, []
    for _ in range(hvcc[22]):
        count = struct.unpack(">H", hvcc[i + 1 : i + 3])[0]
        i += 3
        for _ in range(count):
            n = struct.unpack(">H", hvcc[i : i + 2])[0]
            units.append(hvcc[i + 2 : i + 2 + n])
            i += 2 + n
    return units


def heic_payload_bytes(data: bytes) -> int:
    """Annex-B-equivalent size of the HEVC stream in a HEIC file: parameter sets + slices, no SEI."""
    s, e = find_box(data, [b"meta", b"iprp", b"ipco", b"hvcC"])
    units = _hvcc_nal_units(data[s:e])
    length_size = (data[s + 21] & 3) + 1
    ms, me = find_box(data, [b"mdat"])
    i = ms
    while i + length_size <= me:
        n = int.from_bytes(data[i : i + length_size], "big")
        units.append(data[i + length_size : i + length_size + n])
        i += length_size + n
    kept = [u for u in units if u and ((u[0] >> 1) & 0x3F) not in (39, 40)]  # drop prefix/suffix SEI
    return sum(3 + len(u) for u in kept)
