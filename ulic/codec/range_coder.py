"""Range coding of integer symbols with integer frequency tables (constriction's RangeEncoder).

Every model is built from a stored integer table (frequencies summing to 2**PRECISION), which
is exactly representable as float64, so encoder and decoder construct identical models.
"""

from __future__ import annotations

from functools import lru_cache

import constriction
import numpy as np

from ulic.codec.entropy_models import PRECISION
from ulic.errors import BitstreamError


@lru_cache(maxsize=4096)
def _model(table: bytes):
    freq = np.frombuffer(table, dtype=np.int32).astype(np.float64) / (1 << PRECISION)
    return constriction.stream.model.Categorical(freq, perfect=False)


def model_for(freq: np.ndarray):
    """A constriction model for one int32 frequency row (cached by content)."""
    return _model(np.ascontiguousarray(freq, dtype=np.int32).tobytes())


def words_to_bytes(words: np.ndarray) -> bytes:
    """Big-endian bytes of the coder's 32-bit words, with trailing zero bytes dropped."""
    return words.astype(">u4").tobytes().rstrip(b"\x00")


def bytes_to_words(data: bytes) -> np.ndarray:
    pad = (-len(data)) % 4
    return np.frombuffer(data + b"\x00" * pad, dtype=">u4").astype(np.uint32)


class Encoder:
    """Appends groups of symbols, each group coded with one frequency table."""

    def __init__(self):
        self._enc = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, freq: np.ndarray) -> None:
        """symbols: ints in [0, len(freq)); freq: int32 table."""
        if symbols.size:
            self._enc.encode(np.ascontiguousarray(symbols, dtype=np.int32), model_for(freq))

    def finish(self) -> bytes:
        return words_to_bytes(self._enc.get_compressed())


class Decoder:
    """Reads symbol groups back in the order they were encoded."""

    def __init__(self, data: bytes):
        self._dec = constriction.stream.queue.RangeDecoder(bytes_to_words(data))

    def decode(self, count: int, freq: np.ndarray) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.int32)
        try:
            return np.asarray(self._dec.decode(model_for(freq), count), dtype=np.int32)
        except (ValueError, RuntimeError, AssertionError) as e:  # constriction raises all three
            raise BitstreamError(
                "entropy-coded data is corrupt " f"({str(e).strip().rstrip('.') or type(e).__name__})"
            ) from None
