"""The .ulic container (documented in docs/bitstream.md). Version 2 (written now):

    lead       1 byte   0xE0 | multi << 3 | FORMAT_VERSION: magic, version and a flag for
                        more than one section, in one byte
    height     varint   original image height (LEB128)
    width      varint   original image width
    quality    1 byte   q = byte / 255
    [sections] only when multi: varint count (2..16), then a varint length for each section
               but the last
    sections   the section bytes; the last runs up to the check
    check      2 bytes  CRC-16/CCITT-FALSE (big-endian) over the model fingerprint's first
                        4 bytes followed by every byte above: binds the file to its model

Fixed overhead of a one-section image with sides below 16,384 px: 1 + 2 + 2 + 1 + 2 = 8 bytes.
The first section is always the entropy-coded latent; each further section starts with a kind
byte (SECTION_CAPTION: the user's caption, UTF-8; SECTION_SRC: concept ids, `ulic.semantics.src`),
at most one section of each kind.
Version 1 ("UL", version, model id byte, sizes, quality, section count, sections, CRC: 12
bytes) is still read.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field

from ulic.errors import BitstreamError, ModelMismatchError, UlicError

MAGIC = b"UL"  # version 1 files start with it
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
LEAD_MAGIC = 0xE0  # high nibble of a version-2 lead byte
LEAD_MULTI = 0x08  # lead-byte flag: more than one section
MAX_SECTIONS = 16
CHECK_BYTES = 2
SECTION_CAPTION = 0x01  # kind byte of an extra section: user text, UTF-8, not read by any model
SECTION_SRC = 0x02  # kind byte of the semantic residual section (`ulic.semantics.src`)
MAX_CAPTION_BYTES = 1024
MAX_SRC_BYTES = 64  # vocabulary id, flags and the coded concept ids (16 ids of at most 16 bits: 32)
EXTRA_KINDS = {SECTION_CAPTION: "caption", SECTION_SRC: "src"}
EXTRA_LIMITS = {"caption": MAX_CAPTION_BYTES, "src": MAX_SRC_BYTES}  # bytes after the kind byte
MAX_EXTRA_BYTES = 16 + sum(v + 1 for v in EXTRA_LIMITS.values())  # section count and lengths, every extra section


def caption_section(text: str) -> bytes:
    """The caption section (kind byte + UTF-8); a UlicError if empty, too long or not text."""
    try:
        raw = text.encode("utf-8")
    except (UnicodeEncodeError, AttributeError):
        raise UlicError("the caption must be text that UTF-8 can encode") from None
    if not raw:
        raise UlicError("the caption is empty (leave it out instead)")
    if len(raw) > MAX_CAPTION_BYTES:
        raise UlicError(f"the caption is {len(raw)} bytes of UTF-8, at most {MAX_CAPTION_BYTES} fit")
    return bytes([SECTION_CAPTION]) + raw


def read_extras(sections: list[bytes]) -> dict[str, str | bytes]:
    """The extra sections (all but the first) by kind name: {"caption": text, "src": the SRC
    section's bytes after its kind byte}; a BitstreamError for an unknown or repeated kind, an
    empty or over-long section or a caption that is not UTF-8."""
    out: dict[str, str | bytes] = {}
    for s in sections:
        if not s:
            raise BitstreamError("malformed file (an empty extra section)")
        kind = EXTRA_KINDS.get(s[0])
        if kind is None:
            raise BitstreamError(f"unknown section kind {s[0]} (written by a newer ulic?)")
        if kind in out:
            raise BitstreamError(f"malformed file (two {kind} sections)")
        if len(s) - 1 > EXTRA_LIMITS[kind]:
            raise BitstreamError(f"malformed file (a {kind} of {len(s) - 1} bytes)")
        if kind == "src":
            out[kind] = bytes(s[1:])
            continue
        try:
            out[kind] = s[1:].decode("utf-8")
        except UnicodeDecodeError:
            raise BitstreamError(f"malformed file (the {kind} is not UTF-8)") from None
    return out


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF); crc16(b"123456789") == 0x29B1."""
    return binascii.crc_hqx(data, crc)


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
    model_id: int | None  # version 1 only: first byte of the model's sha256 (None in version 2)
    sections: list[bytes] = field(default_factory=list)
    version: int = FORMAT_VERSION

    def to_bytes(self, fingerprint: bytes) -> bytes:
        if not self.sections:
            raise ValueError("a container needs at least one section")
        multi = len(self.sections) > 1 or self.version == 1
        if self.version == 1:
            out = bytearray(MAGIC) + bytes([1, fingerprint[0]])
        elif self.version == FORMAT_VERSION:
            out = bytearray([LEAD_MAGIC | (LEAD_MULTI if multi else 0) | FORMAT_VERSION])
        else:
            raise ValueError(f"cannot write format version {self.version}")
        out += write_varint(self.height) + write_varint(self.width)
        out.append(self.quality)
        if multi:
            out += write_varint(len(self.sections))
            for s in self.sections[:-1]:
                out += write_varint(len(s))
        for s in self.sections:
            out += s
        check = crc16(fingerprint[:4] + bytes(out))
        return bytes(out) + check.to_bytes(CHECK_BYTES, "big")


def _lead(data: bytes, fingerprint: bytes | None) -> tuple[int, int | None, bool, int]:
    """(version, model id or None, multi-section, position after the lead bytes)."""
    if len(data) >= 2 and data[:2] == MAGIC:
        if len(data) < 9:
            raise BitstreamError("file is truncated")
        version, model_id = data[2], data[3]
        if version != 1:
            raise BitstreamError(
                f"unsupported format version {version} (this ulic reads " f"{', '.join(map(str, READABLE_VERSIONS))})"
            )
        if fingerprint is not None and model_id != fingerprint[0]:
            raise ModelMismatchError(
                f"file was made with model id {model_id}, " f"but the loaded model's id is {fingerprint[0]}"
            )
        return 1, model_id, True, 4
    if not data or data[0] & 0xF0 != LEAD_MAGIC:
        raise BitstreamError("not a ulic file (bad magic byte)")
    version = data[0] & 0x07
    if version != FORMAT_VERSION:
        raise BitstreamError(
            f"unsupported format version {version} (this ulic reads " f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    if len(data) < 7:
        raise BitstreamError("file is truncated")
    return version, None, bool(data[0] & LEAD_MULTI), 1


def peek_size(head: bytes) -> tuple[int, int]:
    """(height, width) from a file's first bytes (magic and version checked, nothing else): what
    bounds the rest of the file before it is read."""
    _, _, _, pos = _lead(head, None)
    height, pos = read_varint(head, pos)
    width, _ = read_varint(head, pos)
    return height, width


def parse(data: bytes, fingerprint: bytes | None = None, max_pixels: int | None = None) -> Container:
    """Parse and check a container; fingerprint (the loaded model's) enables the CRC check,
    which also rejects files written with another model."""
    version, model_id, multi, pos = _lead(data, fingerprint)
    height, pos = read_varint(data, pos)
    width, pos = read_varint(data, pos)
    if not (1 <= height and 1 <= width):
        raise BitstreamError("malformed header (zero image size)")
    if max_pixels is not None and height * width > max_pixels:
        raise BitstreamError(f"image size {width}x{height} in header exceeds the limit of " f"{max_pixels} pixels")
    body_end = len(data) - CHECK_BYTES
    if pos >= body_end:
        raise BitstreamError("file is truncated")
    quality = data[pos]
    pos += 1
    count = 1
    if multi:
        count, pos = read_varint(data, pos)
        if not (1 if version == 1 else 2) <= count <= MAX_SECTIONS:
            raise BitstreamError(f"malformed header ({count} sections)")
    lengths = []
    for _ in range(count - 1):
        n, pos = read_varint(data, pos)
        lengths.append(n)
    if pos + sum(lengths) > body_end:
        raise BitstreamError("file is truncated (sections longer than the file)")
    if fingerprint is not None:
        if crc16(fingerprint[:4] + data[:body_end]) != int.from_bytes(data[body_end:], "big"):
            raise BitstreamError(
                "integrity check failed: the file is corrupted or truncated"
                + (", or was written with another model" if version >= 2 else "")
            )
    sections = []
    for n in lengths:
        sections.append(data[pos : pos + n])
        pos += n
    sections.append(data[pos:body_end])
    return Container(height, width, quality, model_id, sections, version)
