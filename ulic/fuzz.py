"""Fuzz campaign on the decoder: every input must end in a ulic error or a valid image.

    python -m ulic.fuzz --seconds 600 --out fuzz.json

Inputs are made from valid files by five kinds of mutation:
    random     random bytes of random length (sometimes behind the right magic bytes)
    truncate   a valid file cut at a random length
    bitflip    1-8 random bits of a valid file flipped
    header     one header field (version, model id, height, width, quality, section count or
               lengths) set to a random or extreme value, with the integrity check recomputed
    payload    random bytes of the entropy-coded section changed, check recomputed, so the
               mutation reaches the range decoder and the networks
A crash is any exception that is not a `UlicError`; a hang is a decode slower than --hang-s.
The header pixel limit is set low (ULIC_MAX_PIXELS, default here 512x512) to keep each decode
short; peak memory is the process's maximum RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
import traceback
from dataclasses import dataclass, field

from ulic import bitstream
from ulic.errors import UlicError

KINDS = ("random", "truncate", "bitflip", "header", "payload")


def _refresh_check(body: bytes, fingerprint: bytes) -> bytes:
    return body + bitstream.crc16(fingerprint[:4] + body).to_bytes(2, "big")


def mutate(seed_file: bytes, kind: str, rng: random.Random, fingerprint: bytes) -> bytes:
    """One mutated input of the given kind made from a valid file."""
    if kind == "random":
        data = bytes(rng.getrandbits(8) for _ in range(rng.choice((0, 1, 2, 8, 16, 64, 512))))
        return (bitstream.MAGIC + data) if rng.random() < 0.5 else data
    if kind == "truncate":
        return seed_file[:rng.randrange(len(seed_file))]
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
        fld = rng.choice(("version", "model_id", "height", "width", "quality", "sections"))
        if fld in ("version", "model_id", "quality"):
            setattr(c, fld, value & 0xFF)
        elif fld in ("height", "width"):
            setattr(c, fld, value)
        else:
            cut = rng.randrange(len(c.sections[0]) + 1)
            c.sections = [c.sections[0][:cut], c.sections[0][cut:]] + [b""] * rng.randrange(20)
            c.sections = c.sections[:max(1, value % 20)]
        if c.version != bitstream.FORMAT_VERSION:
            body = bytearray(c.to_bytes(fingerprint)[:-2])
            body[2] = c.version
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


@dataclass
class Report:
    tried: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    outcomes: dict[str, int] = field(default_factory=dict)  # "image" or the error type's name
    crashes: list[dict] = field(default_factory=list)
    hangs: list[dict] = field(default_factory=list)
    slowest_s: float = 0.0
    seconds: float = 0.0
    max_rss_mb: float = 0.0

    def as_dict(self) -> dict:
        return {"inputs": sum(self.tried.values()), "tried": self.tried, "outcomes": self.outcomes,
                "crashes": len(self.crashes), "hangs": len(self.hangs),
                "crash_examples": self.crashes[:5], "hang_examples": self.hangs[:5],
                "slowest_decode_s": round(self.slowest_s, 3), "seconds": round(self.seconds, 1),
                "max_rss_mb": round(self.max_rss_mb, 1)}


def run_campaign(seeds: list[bytes], model, n: int | None = None, seconds: float | None = None,
                 hang_s: float = 10.0, rng_seed: int = 0) -> Report:
    """Decode mutated inputs until n inputs or `seconds` have passed."""
    from ulic.api import decode
    rng = random.Random(rng_seed)
    rep = Report()
    t0 = time.perf_counter()
    i = 0
    while (n is None or i < n) and (seconds is None or time.perf_counter() - t0 < seconds):
        kind = KINDS[i % len(KINDS)]
        data = mutate(rng.choice(seeds), kind, rng, model.fingerprint)
        rep.tried[kind] += 1
        t = time.perf_counter()
        try:
            d = decode(data, model=model)
            assert d.image.shape[2:] == (d.header.height, d.header.width)
            outcome = "image"
        except UlicError as e:
            outcome = type(e).__name__
        except Exception as e:  # a crash: anything that is not a defined ulic error
            outcome = "crash"
            rep.crashes.append({"kind": kind, "input_hex": data[:64].hex(), "error": repr(e),
                                "where": traceback.format_exc(limit=3).splitlines()[-3:]})
        dt = time.perf_counter() - t
        rep.slowest_s = max(rep.slowest_s, dt)
        if dt > hang_s:
            rep.hangs.append({"kind": kind, "input_hex": data[:64].hex(), "seconds": dt})
        rep.outcomes[outcome] = rep.outcomes.get(outcome, 0) + 1
        i += 1
    rep.seconds = time.perf_counter() - t0
    rep.max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return rep


def seed_files(model, sizes=((64, 96), (130, 17), (128, 128)), qualities=(0, 50, 100)) -> list[bytes]:
    """Valid files of synthetic images at a few sizes and qualities."""
    import numpy as np

    from ulic.api import encode
    rng = np.random.default_rng(0)
    out = []
    for h, w in sizes:
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) % 64) * 4], -1)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        out += [encode(img, quality=q, model=model).data for q in qualities]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--n", type=int, default=None, help="stop after this many inputs")
    ap.add_argument("--hang-s", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the JSON report here")
    args = ap.parse_args(argv)
    os.environ.setdefault("ULIC_MAX_PIXELS", str(512 * 512))
    from ulic.codec.store import load_model
    model = load_model()
    rep = run_campaign(seed_files(model), model, args.n, args.seconds, args.hang_s, args.seed)
    out = {"model": model.model_id, "max_pixels": int(os.environ["ULIC_MAX_PIXELS"]), **rep.as_dict()}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        from ulic.imageio import save_atomic
        save_atomic(text.encode(), args.out)
    return 1 if rep.crashes or rep.hangs else 0


if __name__ == "__main__":
    sys.exit(main())
