import random

import pytest

from ulic import bitstream
from ulic.errors import BitstreamError, ModelMismatchError

FP = bytes(range(32))


def test_crc16_check_value():
    assert bitstream.crc16(b"123456789") == 0x29B1


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 16383, 16384, 2**31])
def test_varint_round_trip(n):
    b = bitstream.write_varint(n)
    assert bitstream.read_varint(b + b"xyz", 0) == (n, len(b))


def make(sections=(b"payload-bytes" * 10,)):
    return bitstream.Container(512, 768, 77, FP[0], list(sections)).to_bytes(FP)


def test_round_trip_and_overhead():
    data = make()
    c = bitstream.parse(data, FP)
    assert (c.height, c.width, c.quality, c.sections) == (512, 768, 77, [b"payload-bytes" * 10])
    assert len(data) - 130 == 12  # magic 2, version 1, model 1, size 4, q 1, count 1, crc 2


def test_multiple_sections():
    c = bitstream.parse(make((b"a", b"", b"ccc")), FP)
    assert c.sections == [b"a", b"", b"ccc"]


def test_truncations_rejected():
    data = make()
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            bitstream.parse(data[:n], FP)


def test_bit_flips_rejected():
    data = make()
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
            bitstream.parse(b"UL\x01" + blob if rng.random() < 0.5 else blob, FP)


def test_other_model_rejected():
    other = bytes([FP[0] + 1]) + FP[1:]
    with pytest.raises(ModelMismatchError):
        bitstream.parse(make(), other)


def test_pixel_limit():
    with pytest.raises(BitstreamError, match="exceeds the limit"):
        bitstream.parse(make(), FP, max_pixels=1000)
