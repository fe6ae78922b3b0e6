"""The .ulic container (documented in docs/bitstream.md).

    magic      2 bytes  b"UL"
    version    1 byte   FORMAT_VERSION
    model id   1 byte   first byte of the sha256 of the model's weights file
    height     varint   original image height (LEB128)
    width      varint   original image width
    quality    1 byte   q = byte / 255
    sections   varint count, then a varint length for each section but the last,
               then the section bytes; the last section runs up to the check
    check      2 bytes  CRC-16/CCITT-FALSE (big-endian) over the model fingerprint's first
                        4 bytes followed by every byte above
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ulic.errors import BitstreamError, ModelMismatchError

MAGIC = b"UL"
FORMAT_VERSION = 1
MAX_SECTIONS = 16


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF); crc16(b"123456789") == 0x29B1."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def write_varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, pos: int, max_bytes: int = 5) -> tuple[int, int]:
    n = shift = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            raise BitstreamError("file is truncated (inside a header field)")
        b = data[pos + i]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos + i + 1
    raise BitstreamError("malformed header (varint too long)")


@dataclass
class Container:
    height: int
    width: int
    quality: int  # 0..255
    model_id: int
    sections: list[bytes] = field(default_factory=list)
    version: int = FORMAT_VERSION

    def header_bytes(self) -> int:
        """Bytes outside the sections' own data (the fixed overhead of this file)."""
        return len(self.to_bytes(b"\0\0\0\0")) - sum(len(s) for s in self.sections)

    def to_bytes(self, fingerprint: bytes) -> bytes:
        if not self.sections:
            raise ValueError("a container needs at least one section")
        out = bytearray(MAGIC)
        out += bytes([self.version, self.model_id])
        out += write_varint(self.height) + write_varint(self.width)
        out.append(self.quality)
        out += write_varint(len(self.sections))
        for s in self.sections[:-1]:
            out += write_varint(len(s))
        for s in self.sections:
            out += s
        check = crc16(fingerprint[:4] + bytes(out))
        return bytes(out) + check.to_bytes(2, "big")


def parse(data: bytes, fingerprint: bytes | None = None, max_pixels: int | None = None) -> Container:
    """Parse and check a container; fingerprint (the loaded model's) enables the CRC check."""
    if len(data) < 2 or data[:2] != MAGIC:
        raise BitstreamError("not a ulic file (bad magic bytes)")
    if len(data) < 9:
        raise BitstreamError("file is truncated")
    version, model_id = data[2], data[3]
    if version != FORMAT_VERSION:
        raise BitstreamError(f"unsupported format version {version} (this ulic reads {FORMAT_VERSION})")
    if fingerprint is not None and model_id != fingerprint[0]:
        raise ModelMismatchError(f"file was made with model id {model_id}, "
                                 f"but the loaded model's id is {fingerprint[0]}")
    height, pos = read_varint(data, 4)
    width, pos = read_varint(data, pos)
    if not (1 <= height and 1 <= width):
        raise BitstreamError("malformed header (zero image size)")
    if max_pixels is not None and height * width > max_pixels:
        raise BitstreamError(f"image size {width}x{height} in header exceeds the limit of "
                             f"{max_pixels} pixels")
    if pos >= len(data) - 2:
        raise BitstreamError("file is truncated")
    quality = data[pos]
    count, pos = read_varint(data, pos + 1)
    if not 1 <= count <= MAX_SECTIONS:
        raise BitstreamError(f"malformed header ({count} sections)")
    lengths = []
    for _ in range(count - 1):
        n, pos = read_varint(data, pos)
        lengths.append(n)
    body_end = len(data) - 2
    if pos + sum(lengths) > body_end:
        raise BitstreamError("file is truncated (sections longer than the file)")
    if fingerprint is not None:
        if crc16(fingerprint[:4] + data[:body_end]) != int.from_bytes(data[body_end:], "big"):
            raise BitstreamError("integrity check failed: the file is corrupted or truncated")
    sections = []
    for n in lengths:
        sections.append(data[pos:pos + n])
        pos += n
    sections.append(data[pos:body_end])
    return Container(height, width, quality, model_id, sections, version)
