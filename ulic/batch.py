"""Folders of images <-> folders of .ulic files: resumable, atomic, per-file errors.

Each output is written atomically (ulic.imageio.save_atomic), so after any interruption,
kill -9 included, an output file either is complete or does not exist. A re-run skips outputs
that exist and removes temporary files that a killed run may have left. A file that fails is
reported and the batch goes on (whatever the error); the summary counts done, skipped and failed
files. Inputs that would write the same output (a.png and a.jpg -> a.ulic) all fail, every run,
naming each other: nothing is overwritten by chance.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ulic.atomic import is_temp_name
from ulic.errors import UlicError
from ulic.imageio import IMAGE_SUFFIXES, save_atomic, to_pil


@dataclass
class BatchSummary:
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_written: int = 0
    pixels: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        s = f"{self.done} done, {self.skipped} skipped, {len(self.failed)} failed, {self.seconds:.1f} s"
        if self.pixels:
            s += f", {self.bytes_written} bytes, {8 * self.bytes_written / self.pixels:.4f} bpp overall"
        return s


def find_inputs(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files under root with one of the suffixes (case-insensitive), sorted, hidden ones skipped."""
    if not root.is_dir():
        raise UlicError(f"{root}: not a folder")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in filenames if not f.startswith(".") and Path(f).suffix.lower() in suffixes]
    return sorted(out)


def remove_stale_temps(root: Path) -> int:
    """Delete temporary files left by killed writers under root; returns how many."""
    n = 0
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            if is_temp_name(f):
                (Path(dirpath) / f).unlink(missing_ok=True)
                n += 1
    return n


def output_pairs(in_dir: Path, out_dir: Path, suffixes: tuple[str, ...], out_suffix: str) -> list[tuple[Path, Path]]:
    """(input, output) for every input under in_dir: out_dir/<same relative path, out_suffix>."""
    return [(p, out_dir / p.relative_to(in_dir).with_suffix(out_suffix)) for p in find_inputs(in_dir, suffixes)]


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' (1 <= K <= N) -> (K, N); UlicError otherwise."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UlicError(f"--shard {text!r}: expected K/N, e.g. 1/4") from None
    if not 1 <= k <= n:
        raise UlicError(f"--shard {text!r}: need 1 <= K <= N")
    return k, n


def in_shard(relative_output: Path, shard: tuple[int, int]) -> bool:
    """Whether this output belongs to shard K of N: a hash of its relative path, so every worker
    decides alone, the N shards cover each file exactly once whatever order the folder lists in,
    and inputs that would write the same output land in the same shard (and fail there together)."""
    k, n = shard
    digest = hashlib.sha256(relative_output.as_posix().encode()).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


def shard_pairs(
    pairs: list[tuple[Path, Path]], out_dir: Path, shard: tuple[int, int] | None
) -> list[tuple[Path, Path]]:
    """The (input, output) pairs of one shard (all of them when shard is None)."""
    if shard is None:
        return pairs
    return [(src, dst) for src, dst in pairs if in_shard(dst.relative_to(out_dir), shard)]


def _clashes(pairs: list[tuple[Path, Path]]) -> dict[Path, str]:
    """For each input whose output another input would also write: the error message."""
    by_dst: dict[Path, list[Path]] = defaultdict(list)
    for src, dst in pairs:
        by_dst[dst].append(src)
    return {
        src: f"{dst} would also be written from {', '.join(str(o) for o in srcs if o != src)} " "(rename one of them)"
        for dst, srcs in by_dst.items()
        if len(srcs) > 1
        for src in srcs
    }


def _error_text(e: Exception) -> str:
    if isinstance(e, UlicError):
        return str(e)
    if isinstance(e, MemoryError):
        return "out of memory"
    if isinstance(e, OSError):
        return f"{e.strerror or e}"
    return f"internal error ({type(e).__name__}: {e})"


def _run(
    pairs: list[tuple[Path, Path]],
    work: Callable[[Path, Path], tuple[int, int]],
    overwrite: bool,
    log: Callable[[str], None],
) -> BatchSummary:
    s = BatchSummary()
    t0 = time.perf_counter()
    clashes = _clashes(pairs)
    for i, (src, dst) in enumerate(pairs, 1):
        if src not in clashes and dst.exists() and not overwrite:
            s.skipped += 1
            continue
        try:
            if src in clashes:
                raise UlicError(clashes[src])
            dst.parent.mkdir(parents=True, exist_ok=True)
            nbytes, pixels = work(src, dst)
        except Exception as e:  # noqa: BLE001 -- every file fails alone; Ctrl-C still stops the batch
            msg = _error_text(e)
            s.failed.append((str(src), msg))
            log(f"[{i}/{len(pairs)}] {src}: error: {msg}")
            continue
        s.done += 1
        s.bytes_written += nbytes
        s.pixels += pixels
        log(f"[{i}/{len(pairs)}] {dst}")
    s.seconds = time.perf_counter() - t0
    return s


def compress_dir(
    in_dir: Path,
    out_dir: Path,
    quality: float | None = None,
    bpp: float | None = None,
    max_bytes: int | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    optimize: int = 0,
    shard: tuple[int, int] | None = None,
    effort: int = 0,
) -> BatchSummary:
    """Compress every image under in_dir to out_dir/<same relative path>.ulic (optimize,
    effort: encode-time optimisation, see `ulic.api.encode`; shard (K, N): only this worker's
    share, see `in_shard`)."""
    from ulic.api import check_encode_options, encode

    check_encode_options(quality, bpp, max_bytes, optimize, effort)  # before any work
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    pairs = shard_pairs(output_pairs(in_dir, out_dir, IMAGE_SUFFIXES, ".ulic"), out_dir, shard)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)

    def work(src: Path, dst: Path) -> tuple[int, int]:
        r = encode(src, quality=quality, bpp=bpp, max_bytes=max_bytes, optimize=optimize, effort=effort)
        for n in r.notices:
            log(f"{src}: notice: {n}")
        save_atomic(r.data, dst, source=src)
        return len(r.data), r.height * r.width

    return _run(pairs, work, overwrite, log)


def decompress_dir(
    in_dir: Path,
    out_dir: Path,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    shard: tuple[int, int] | None = None,
) -> BatchSummary:
    """Decode every .ulic file under in_dir to out_dir/<same relative path>.png (shard: as in
    `compress_dir`)."""
    from ulic.api import decode, read_file

    in_dir, out_dir = Path(in_dir), Path(out_dir)
    pairs = shard_pairs(output_pairs(in_dir, out_dir, (".ulic",), ".png"), out_dir, shard)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)

    def work(src: Path, dst: Path) -> tuple[int, int]:
        d = decode(read_file(src))
        save_atomic(to_pil(d.image), dst, "PNG", source=src)
        return 0, 0

    return _run(pairs, work, overwrite, log)


def print_summary(s: BatchSummary) -> int:
    """Print the summary (and every failure) to stderr; exit code 0, or 1 if any file failed."""
    for path, msg in s.failed:
        print(f"ulic: failed: {path}: {msg}", file=sys.stderr)
    print(f"ulic: {s.line()}", file=sys.stderr)
    return 1 if s.failed else 0
