"""The SRC section (semantic residual coding): a region's concept id costs what the decoder's
prediction from the latent says it should, so a concept the latent already implies is cheap.

    section    kind byte SECTION_SRC | vocabulary id (1 byte) | flags (1 byte) | coded ids
    flags      bit 0: the ids are coded under the uniform prior (the encoder picks whichever of
               the predicted and the uniform prior gives fewer bytes)
    coded ids  GRID * GRID ids, row-major, each range-coded with its region's table

The predictor reads the latent's integer symbols only (`ulic.semantics.predictor`), so the
decoder rebuilds the same tables from the entropy-decoded latent on every machine.
"""

from __future__ import annotations

import numpy as np
import torch

from ulic import bitstream
from ulic.codec import range_coder
from ulic.errors import BitstreamError
from ulic.semantics.predictor import region_features, uniform_tables
from ulic.semantics.vocabulary import Semantics

FLAG_UNIFORM = 0x01
Y_PER_PIXEL = 32  # image pixels per y position, each side


def y_extent(height: int, width: int) -> tuple[int, int]:
    """The y positions that cover the image itself (the rest is padding)."""
    return -(-height // Y_PER_PIXEL), -(-width // Y_PER_PIXEL)


def concept_tables(
    sem: Semantics, sym: torch.Tensor, mean_s: torch.Tensor, size: tuple[int, int], q_byte: int
) -> np.ndarray:
    """The decoder's prediction for an image of size (H, W): (regions, K) int32 tables."""
    return sem.predictor.tables(region_features(sym, mean_s, y_extent(*size), q_byte))


def code_ids(ids: np.ndarray, tables: np.ndarray) -> bytes:
    """Range-code ids (regions,), each under its own table row (regions, K)."""
    enc = range_coder.Encoder()
    for i, t in zip(ids, tables, strict=True):
        enc.encode(np.array([i]), t)
    return enc.finish()


def src_section(ids: np.ndarray, tables: np.ndarray, sem: Semantics) -> bytes:
    """The SRC section (kind byte included) for concept ids (regions,) under the predicted
    tables (regions, K), or under the uniform prior when that is shorter."""
    predicted = code_ids(ids, tables)
    uniform = code_ids(ids, uniform_tables(len(ids), sem.k))
    flags, payload = (0, predicted) if len(predicted) <= len(uniform) else (FLAG_UNIFORM, uniform)
    return bytes([bitstream.SECTION_SRC, sem.vocabulary_id, flags]) + payload


def read_src(section: bytes, sem: Semantics, tables: np.ndarray) -> np.ndarray:
    """The concept ids (regions,) of an SRC section (without its kind byte); BitstreamError for
    another vocabulary, unknown flags or corrupt data."""
    if len(section) < 2:
        raise BitstreamError("malformed file (an SRC section without its header)")
    vid, flags = section[0], section[1]
    if vid != sem.vocabulary_id:
        raise BitstreamError(
            f"the SRC section was written with concept vocabulary {vid}, this model has {sem.vocabulary_id}"
        )
    if flags & ~FLAG_UNIFORM:
        raise BitstreamError(f"malformed file (SRC flags {flags:#04x})")
    if flags & FLAG_UNIFORM:
        tables = uniform_tables(len(tables), sem.k)
    dec = range_coder.Decoder(section[2:])
    return np.concatenate([dec.decode(1, t) for t in tables]).astype(np.int64)


def concepts_from_symbols(
    sem: Semantics, section: bytes, sym: torch.Tensor, mean_s: torch.Tensor, container: bitstream.Container
) -> list[int]:
    """The concept ids of a parsed file's SRC section (its bytes after the kind byte), given the
    file's entropy-decoded y symbols and means."""
    size, q = (container.height, container.width), container.quality
    return [int(v) for v in read_src(section, sem, concept_tables(sem, sym, mean_s, size, q))]


def file_concepts(codec, container: bitstream.Container, section: bytes, sem: Semantics) -> list[int]:
    """The concept ids of a parsed file's SRC section (its bytes after the kind byte), entropy-
    decoding the latent for the predictor's features (`ulic info`, which decodes nothing else)."""
    from ulic.codec.model import LATENT_PER_Z
    from ulic.limits import padded
    from ulic.vae.taef2 import SCALE

    hp, wp = padded(container.height, container.width, codec.cfg.downsample)
    z_hw = (hp // SCALE // LATENT_PER_Z, wp // SCALE // LATENT_PER_Z)
    sym, mean_s = codec.decode_symbols(container.sections[0], z_hw, container.quality)
    return concepts_from_symbols(sem, section, sym, mean_s, container)
