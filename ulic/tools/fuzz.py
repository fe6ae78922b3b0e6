"""Fuzz campaign on the decoders: every input must end in a ulic error or a valid image.

    python -m ulic.tools.fuzz --seconds 600 --out fuzz.json      # or --n 100000 (--kinds to choose)

.ulic inputs (through `ulic.api.decode`) are made from valid files by six kinds of mutation:
    random     random bytes of random length (sometimes behind the right magic bytes)
    truncate   a valid file cut at a random length
    bitflip    1-8 random bits of a valid file flipped
    header     one header field (version, model id, height, width, quality, section count or
               lengths) set to a random or extreme value, with the integrity check recomputed
    payload    random bytes of the last section changed, check recomputed, so the mutation
               reaches the range decoder and the networks (or, in captioned and SRC
               seeds, that section's kind byte and contents)
    size       structure-aware: a valid container (check recomputed) whose image size is
               extreme for the pixel limit (strips, just over and under it, 2**35 - 1) with
               an empty, short, random or real payload
Image inputs (through `ulic.imageio.load_image`, what `compress` reads) of two kinds:
    png        structure-aware PNGs: IHDR fields at extreme values (sizes, bit depths, colour
               types, interlacing) with valid chunk CRCs, pixel data complete, short, split
               over IDAT chunks or garbage, optional PLTE and IEND
    image      small valid PNG, JPEG, GIF, BMP, TIFF, WebP and PPM files with bits flipped,
               bytes overwritten or the end cut off
A crash is any exception that is not a `UlicError`; a hang is an input slower than --hang-s.
The pixel limit is set low (ULIC_MAX_PIXELS, default here 512x512) to keep each decode
short; peak memory is the process's maximum RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import struct
import sys
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from ulic import bitstream
from ulic.diffusion import DECODERS
from ulic.errors import UlicError

CONTAINER_KINDS = ("random", "truncate", "bitflip", "header", "payload", "size")
IMAGE_KINDS = ("png", "image")
KINDS = CONTAINER_KINDS + IMAGE_KINDS


def _refresh_check(body: bytes, fingerprint: bytes) -> bytes:
    return body + bitstream.crc16(fingerprint[:4] + body).to_bytes(2, "big")


def mutate(seed_file: bytes, kind: str, rng: random.Random, fingerprint: bytes) -> bytes:
    """One mutated input of the given kind made from a valid file."""
    if kind == "random":
        data = bytes(rng.getrandbits(8) for _ in range(rng.choice((0, 1, 2, 8, 16, 64, 512))))
        lead = rng.choice((bitstream.MAGIC + b"\x01", bytes([bitstream.LEAD_MAGIC | bitstream.FORMAT_VERSION]), b""))
        return lead + data
    if kind == "truncate":
        return seed_file[: rng.randrange(len(seed_file))]
    if kind == "bitflip":
        b = bytearray(seed_file)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    c = bitstream.parse(seed_file, fingerprint)
    if kind == "header":
        extreme = rng.choice((0, 1, 15, 16, 17, 127, 128, 255, 2**14, 2**21 - 1, 2**28, 2**35 - 1))
        value = extreme if rng.random() < 0.5 else rng.randrange(1 << rng.choice((8, 16, 28)))
        fld = rng.choice(("lead", "height", "width", "quality", "sections"))
        if fld == "quality":
            c.quality = value & 0xFF
        elif fld in ("height", "width"):
            setattr(c, fld, value)
        else:
            cut = rng.randrange(len(c.sections[0]) + 1)
            c.sections = [c.sections[0][:cut], c.sections[0][cut:]] + [b""] * rng.randrange(20)
            c.sections = c.sections[: max(1, value % 20)]
        if fld == "lead":  # any lead byte (magic, version, section flag), with a valid check
            body = bytearray(c.to_bytes(fingerprint)[:-2])
            body[0] = value & 0xFF
            return _refresh_check(bytes(body), fingerprint)
        return c.to_bytes(fingerprint)
    if kind == "payload":
        s = bytearray(c.sections[-1])
        for _ in range(rng.randint(1, 16)):
            if s and rng.random() < 0.8:
                s[rng.randrange(len(s))] = rng.getrandbits(8)
            else:
                s += bytes([rng.getrandbits(8)])
        c.sections[-1] = bytes(s)
        return c.to_bytes(fingerprint)
    raise ValueError(kind)


def extreme_size(rng: random.Random, limit: int) -> tuple[int, int]:
    """(height, width) at the edges of the pixel limit: strips, squares just inside and outside
    it (before and after padding to 128), sides a varint can barely hold."""
    side = int(limit**0.5)
    sides = (
        1,
        15,
        16,
        17,
        127,
        128,
        129,
        side - 127,
        side,
        side + 1,
        limit // 128,
        limit // 127,
        limit // 16,
        limit,
        limit + 1,
        2**35 - 1,
    )
    return rng.choice(sides), rng.choice(sides)


def mutate_size(seed_file: bytes, rng: random.Random, fingerprint: bytes, limit: int) -> bytes:
    """A valid container (check recomputed) declaring an extreme image size."""
    c = bitstream.parse(seed_file, fingerprint)
    c.height, c.width = extreme_size(rng, limit)
    n = rng.choice((0, 1, 4, 16, 64, 256, 1024, -1))
    c.sections = [c.sections[-1] if n < 0 else bytes(rng.getrandbits(8) for _ in range(n))]
    return c.to_bytes(fingerprint)


def png_chunk(ctype: bytes, data: bytes, good_crc: bool = True) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 (deliberately wrong unless good_crc)."""
    crc = zlib.crc32(ctype + data) ^ (0 if good_crc else 1)
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", crc)


def make_png(
    width: int,
    height: int,
    raw: bytes,
    depth: int = 8,
    colour: int = 2,
    interlace: int = 0,
    idat_parts: int = 1,
    plte: bool = False,
    iend: bool = True,
) -> bytes:
    """A PNG with the given header whose IDAT chunks hold zlib(raw) (filtered rows: a filter
    byte, then the row's bytes), split into idat_parts chunks."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    z = zlib.compress(raw)
    step = -(-len(z) // max(1, idat_parts)) or 1
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    if plte:
        out += png_chunk(b"PLTE", bytes(range(256)) * 3)
    out += b"".join(png_chunk(b"IDAT", z[i : i + step]) for i in range(0, len(z), step))
    return out + (png_chunk(b"IEND", b"") if iend else b"")


_PNG_VALID = tuple(
    (c, d) for c, ds in {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}.items() for d in ds
)


def fuzz_png(rng: random.Random, limit: int) -> bytes:
    """A structure-aware PNG: extreme header fields, valid CRCs, pixel data of any length."""
    from ulic.imageio import png_pixel_bytes

    small = (0, 1, 15, 16, 16, 17, 24, 40, 64, 129)
    big = (int(limit**0.5), limit // 16, limit, 2**31 - 1, 2**32 - 1)
    w, h = (rng.choice(small if rng.random() < 0.8 else big) for _ in range(2))
    if rng.random() < 0.8:  # a combination the PNG standard allows
        colour, depth = rng.choice(_PNG_VALID)
    else:
        colour, depth = rng.choice((0, 1, 2, 3, 4, 5, 6, 7)), rng.choice((0, 1, 2, 3, 4, 8, 16, 255))
    interlace = rng.choice((0, 0, 1, 2))
    need = png_pixel_bytes(w, h, depth, colour, interlace & 1) if depth in (1, 2, 4, 8, 16) else 64
    n = rng.choice((need, need, need - 1, need // 2, need + 7, 0, 5))
    raw = bytes(rng.getrandbits(8) for _ in range(max(0, min(n, 1 << 16))))
    if rng.random() < 0.5:  # valid filter bytes (0-4) in front of the rows, mostly
        raw = bytes(b % 5 for b in raw)
    data = make_png(
        w,
        h,
        raw,
        depth,
        colour,
        interlace,
        rng.choice((1, 1, 2, 5)),
        plte=colour == 3 or rng.random() < 0.1,
        iend=rng.random() < 0.9,
    )
    if rng.random() < 0.1:  # garbage or a flipped bit somewhere after the signature
        b = bytearray(data)
        b[rng.randrange(8, len(b))] ^= 1 << rng.randrange(8)
        data = bytes(b)
    return data


def image_seeds() -> list[bytes]:
    """Small valid images (40x24) in every format ulic reads."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8), "RGB")
    out = []
    for fmt, img, kw in (
        ("PNG", rgb, {}),
        ("PNG", rgb.convert("P"), {}),
        ("PNG", rgb.convert("RGBA"), {}),
        ("JPEG", rgb, {"quality": 90}),
        ("JPEG", rgb, {"progressive": True}),
        ("GIF", rgb.convert("P"), {}),
        ("BMP", rgb, {}),
        ("TIFF", rgb, {"compression": "tiff_deflate"}),
        ("WEBP", rgb, {"lossless": True}),
        ("WEBP", rgb, {"quality": 50}),
        ("PPM", rgb, {}),
    ):
        b = io.BytesIO()
        img.save(b, format=fmt, **kw)
        out.append(b.getvalue())
    return out


def mutate_image(seed: bytes, rng: random.Random) -> bytes:
    """A valid small image with bits flipped, bytes overwritten or its end cut off."""
    b = bytearray(seed)
    op = rng.choice(("flip", "overwrite", "cut"))
    if op == "cut":
        return bytes(b[: rng.randrange(len(b))])
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        if op == "flip":
            b[i] ^= 1 << rng.randrange(8)
        else:
            b[i] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.getrandbits(8)))
    return bytes(b)


def make_input(
    kind: str, rng: random.Random, seeds: list[bytes], images: list[bytes], fingerprint: bytes, limit: int
) -> bytes:
    """One fuzz input of the given kind."""
    if kind == "size":
        return mutate_size(rng.choice(seeds), rng, fingerprint, limit)
    if kind == "png":
        return fuzz_png(rng, limit)
    if kind == "image":
        return mutate_image(rng.choice(images), rng)
    return mutate(rng.choice(seeds), kind, rng, fingerprint)


@dataclass
class Report:
    tried: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    outcomes: dict[str, int] = field(default_factory=dict)  # "image" or the error type's name
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> outcome -> count
    kind_seconds: dict[str, float] = field(default_factory=dict)  # time spent decoding each kind
    crashes: list[dict] = field(default_factory=list)
    hangs: list[dict] = field(default_factory=list)
    slowest_s: float = 0.0
    seconds: float = 0.0
    max_rss_mb: float = 0.0

    def as_dict(self) -> dict:
        return {
            "inputs": sum(self.tried.values()),
            "tried": self.tried,
            "outcomes": self.outcomes,
            "outcomes_by_kind": self.by_kind,
            "seconds_by_kind": {k: round(v, 1) for k, v in self.kind_seconds.items()},
            "crashes": len(self.crashes),
            "hangs": len(self.hangs),
            "crash_examples": self.crashes[:5],
            "hang_examples": self.hangs[:5],
            "slowest_decode_s": round(self.slowest_s, 3),
            "seconds": round(self.seconds, 1),
            "inputs_per_s": round(sum(self.tried.values()) / max(self.seconds, 1e-9), 1),
            "max_rss_mb": round(self.max_rss_mb, 1),
        }


def _run_one(kind: str, data: bytes, model, decoder: str | None = None) -> None:
    """Decode one input with the decoder its kind targets; raises what the decoder raises."""
    from ulic.api import decode
    from ulic.imageio import load_image

    if kind in IMAGE_KINDS:
        x = load_image(data)
        assert x.shape[1] == 3 and x.shape[2] >= 16 and x.shape[3] >= 16
        return
    d = decode(data, model=model, decoder=decoder)
    assert d.image.shape[2:] == (d.header.height, d.header.width)


def run_campaign(
    seeds: list[bytes],
    model,
    n: int | None = None,
    seconds: float | None = None,
    hang_s: float = 10.0,
    rng_seed: int = 0,
    kinds: tuple[str, ...] = KINDS,
    progress: Callable[[str], None] | None = None,
    decoder: str | None = None,
) -> Report:
    """Decode mutated inputs of the given kinds, in turn, until n inputs or `seconds` have passed
    (decoder: the stage-2 decoder for .ulic inputs, default the model's choice)."""
    from ulic.limits import max_pixels

    rng = random.Random(rng_seed)
    images, limit = image_seeds(), max_pixels()
    rep = Report()
    t0 = last = time.perf_counter()
    i = 0
    while (n is None or i < n) and (seconds is None or time.perf_counter() - t0 < seconds):
        kind = kinds[i % len(kinds)]
        data = make_input(kind, rng, seeds, images, model.fingerprint, limit)
        rep.tried[kind] += 1
        t = time.perf_counter()
        try:
            _run_one(kind, data, model, decoder)
            outcome = "image"
        except UlicError as e:
            outcome = type(e).__name__
        except Exception as e:  # a crash: anything that is not a defined ulic error
            outcome = "crash"
            rep.crashes.append(
                {
                    "kind": kind,
                    "input_hex": data[:64].hex(),
                    "error": repr(e),
                    "where": traceback.format_exc(limit=3).splitlines()[-3:],
                }
            )
        dt = time.perf_counter() - t
        rep.slowest_s = max(rep.slowest_s, dt)
        rep.kind_seconds[kind] = rep.kind_seconds.get(kind, 0.0) + dt
        if dt > hang_s:
            rep.hangs.append({"kind": kind, "input_hex": data[:64].hex(), "seconds": dt})
        rep.outcomes[outcome] = rep.outcomes.get(outcome, 0) + 1
        per = rep.by_kind.setdefault(kind, {})
        per[outcome] = per.get(outcome, 0) + 1
        i += 1
        if progress is not None and time.perf_counter() - last >= 60:
            last = time.perf_counter()
            progress(f"{i} inputs, {len(rep.crashes)} crashes, {len(rep.hangs)} hangs, " f"{last - t0:.0f} s")
    rep.seconds = time.perf_counter() - t0
    rep.max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return rep


def seed_files(model, sizes=((64, 96), (130, 17), (128, 128)), qualities=(0, 50, 100)) -> list[bytes]:
    """Valid files of synthetic images at a few sizes and qualities, each size also with a caption
    and (when the model has a concept vocabulary) with an SRC section."""
    import numpy as np

    from ulic.api import encode
    from ulic.model_store import load_semantics

    has_semantics = model.folder is not None and load_semantics(str(model.folder)) is not None

    rng = np.random.default_rng(0)
    out = []
    for h, w in sizes:
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) % 64) * 4], -1)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        out += [encode(img, quality=q, model=model).data for q in qualities]
        out.append(encode(img, quality=qualities[len(qualities) // 2], model=model, caption="Hafen — 港 ✓").data)
        if has_semantics:  # and with an SRC section
            out.append(encode(img, quality=qualities[len(qualities) // 2], model=model, src=True).data)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=None, help="stop after this long (default 300 without --n)")
    ap.add_argument("--n", type=int, default=None, help="stop after this many inputs")
    ap.add_argument("--hang-s", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the JSON report here")
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="mutation kinds (default: all)")
    ap.add_argument(
        "--decoder",
        choices=DECODERS,
        default=None,
        help="decoder for .ulic inputs (default: the model's choice; mse is fastest)",
    )
    args = ap.parse_args(argv)
    from ulic.imageio import quiet_pillow_logs

    quiet_pillow_logs()  # rejected inputs are counted, not logged
    if args.n is None and args.seconds is None:
        args.seconds = 300
    os.environ.setdefault("ULIC_MAX_PIXELS", str(512 * 512))
    from ulic.model_store import load_model

    try:
        model = load_model()
        seeds = seed_files(model)
    except UlicError as e:
        print(f"ulic.tools.fuzz: error: {e}", file=sys.stderr)
        return 2
    rep = run_campaign(
        seeds,
        model,
        args.n,
        args.seconds,
        args.hang_s,
        args.seed,
        tuple(args.kinds),
        progress=lambda m: print(f"fuzz: {m}", file=sys.stderr, flush=True),
        decoder=args.decoder,
    )
    out = {
        "model": model.model_id,
        "max_pixels": int(os.environ["ULIC_MAX_PIXELS"]),
        "decoder": args.decoder or "model default",
        **rep.as_dict(),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        from ulic.imageio import save_atomic

        save_atomic(text.encode(), args.out)
    return 1 if rep.crashes or rep.hangs else 0


if __name__ == "__main__":
    sys.exit(main())
