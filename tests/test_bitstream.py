import random

import pytest

from ulic import bitstream
from ulic.errors import BitstreamError, ModelMismatchError

FP = bytes(range(32))


def test_crc16_check_value():
    assert bitstream.crc16(b"123456789") == 0x29B1


def test_crc16_matches_the_bitwise_definition():
    def bitwise(data: bytes, crc: int = 0xFFFF) -> int:
        for byte in data:
            crc ^= byte << 8
            for _ in range(8):
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        return crc

    rng = random.Random(1)
    for n in (0, 1, 7, 300):
        blob = bytes(rng.randrange(256) for _ in range(n))
        assert bitstream.crc16(blob) == bitwise(blob)


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 16383, 16384, 2**31])
def test_varint_round_trip(n):
    b = bitstream.write_varint(n)
    assert bitstream.read_varint(b + b"xyz", 0) == (n, len(b))


def make(sections=(b"payload-bytes" * 10,), version=bitstream.FORMAT_VERSION):
    return bitstream.Container(512, 768, 77, None, list(sections), version).to_bytes(FP)


def test_round_trip_and_overhead():
    data = make()
    c = bitstream.parse(data, FP)
    assert (c.height, c.width, c.quality, c.sections, c.version) == (512, 768, 77, [b"payload-bytes" * 10], 2)
    assert len(data) - 130 == 8  # lead 1, size 4, q 1, crc 2
    assert data[0] == 0xE2


@pytest.mark.parametrize("version", [1, 2])
def test_multiple_sections(version):
    data = make((b"a", b"", b"ccc"), version)
    c = bitstream.parse(data, FP)
    assert c.sections == [b"a", b"", b"ccc"] and c.version == version
    if version == 2:
        assert data[0] == 0xEA  # the multi-section flag


def test_version_1_files_still_read():
    data = make(version=1)
    assert data[:4] == b"UL\x01" + FP[:1] and len(data) - 130 == 12
    c = bitstream.parse(data, FP)
    assert (c.height, c.width, c.quality, c.model_id, c.version) == (512, 768, 77, FP[0], 1)


def test_unknown_versions_rejected_clearly():
    body = bytearray(make()[:-2])
    body[0] = 0xE3
    data = bytes(body) + bitstream.crc16(FP[:4] + bytes(body)).to_bytes(2, "big")
    with pytest.raises(BitstreamError, match="unsupported format version 3"):
        bitstream.parse(data, FP)
    with pytest.raises(BitstreamError, match="unsupported format version 7"):
        bitstream.parse(b"UL\x07" + make()[1:], FP)


@pytest.mark.parametrize("version", [1, 2])
def test_truncations_rejected(version):
    data = make(version=version)
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            bitstream.parse(data[:n], FP)


@pytest.mark.parametrize("version", [1, 2])
def test_bit_flips_rejected(version):
    data = make(version=version)
    for i in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(BitstreamError):
                bitstream.parse(bytes(bad), FP)


def test_random_files_rejected():
    rng = random.Random(0)
    for _ in range(500):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
        with pytest.raises(BitstreamError):
            bitstream.parse(rng.choice((b"UL\x01", b"\xe2", b"")) + blob, FP)


def test_other_model_rejected():
    other = bytes([FP[0] + 1]) + FP[1:]
    with pytest.raises(ModelMismatchError):
        bitstream.parse(make(version=1), other)
    with pytest.raises(BitstreamError, match="another model"):  # version 2: bound by the keyed check
        bitstream.parse(make(), other)


def test_pixel_limit():
    with pytest.raises(BitstreamError, match="exceeds the limit"):
        bitstream.parse(make(), FP, max_pixels=1000)
