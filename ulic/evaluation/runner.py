"""Running a codec over a data set: per-(image, codec, setting) results, cached so runs resume.

Each item (one image at one setting) is encoded, decoded, scored and written to
`<cache>/<name>/<setting>/<image>.json` (plus the reconstruction as PNG, for FID and the report)
with an atomic rename, so an interrupted run picks up where it stopped. Items run in a pool of
worker processes, one torch thread each; results are always gathered in sorted order, and every
metric is computed single-threaded, so the output does not depend on scheduling.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ulic.atomic import write_bytes_atomic
from ulic.errors import UlicError
from ulic.imageio import list_images  # noqa: F401 (re-exported)
from ulic.train.distributed import Rank, barrier, shard_indices

METRICS = ("psnr", "ms_ssim", "lpips_alex", "lpips_vgg", "dists", "grid8")


@dataclass(frozen=True)
class Item:
    """One unit of work: an image coded at one setting by one codec."""

    image: str
    codec: str
    setting: str
    name: str
    metrics: tuple[str, ...]
    cache: str

    @property
    def stem(self) -> Path:
        safe = self.setting.replace(":", "_").replace("/", "_")
        return Path(self.cache) / self.name / safe / Path(self.image).stem


def load_rgb(path: str | Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8).copy()


def to_tensor(a: np.ndarray):
    import torch

    return torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255


def _realism_part(part: str) -> float | None:
    try:
        return float(part[1:]) if part[:1] == "r" else None
    except ValueError:
        return None


def parse_ulic_setting(setting: str) -> tuple[float, int, str | None, int | None, float | None, int, bool]:
    """ "ulic:q<quality>[:o<optimize steps>|:e<effort>][:src][:mse|:fast|:diffusion<steps>][:r<realism>]"
    -> (quality, optimize steps, decoder, diffusion steps, realism, effort, src). No ":o" or ":e"
    part means no encode-time optimisation; no ":src", no SRC section; no ":r" part, the model's
    default realism."""
    parts = setting.split(":")
    decoder, steps, optimize, realism, effort, src = None, None, 0, None, 0, False
    for part in parts[2:]:
        if part == "src":
            src = True
        elif part[:1] == "o" and part[1:].isdigit():
            optimize = int(part[1:])
        elif part[:1] == "e" and part[1:].isdigit():
            effort = int(part[1:])
        elif _realism_part(part) is not None:
            realism = _realism_part(part)
        else:
            decoder = part.rstrip("0123456789")
            steps = int(part[len(decoder) :]) if part[len(decoder) :] else None
    return float(parts[1][1:]), optimize, decoder, steps, realism, effort, src


def code_image(item: Item) -> tuple[np.ndarray, int]:
    """(reconstruction (H, W, 3) uint8, bytes) of one item."""
    if item.codec == "ulic":
        from ulic.api import decode, encode

        quality, optimize, decoder, steps, realism, effort, src = parse_ulic_setting(item.setting)
        r = encode(item.image, quality=quality, optimize=optimize, effort=effort, src=src)
        rec = decode(r.data, decoder=decoder, steps=steps, realism=realism).image
        a = (rec[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        return a, len(r.data)
    from ulic.evaluation.baselines import run_setting

    c = run_setting(load_rgb(item.image), item.setting)
    return c.image, c.nbytes


def score(ref: np.ndarray, rec: np.ndarray, metrics: tuple[str, ...]) -> dict[str, float]:
    """The requested full-reference metrics of one (H, W, 3) uint8 pair."""
    a, b = to_tensor(ref), to_tensor(rec)
    out: dict[str, float] = {}
    for m in metrics:
        if m == "psnr":
            from ulic.evaluation.metrics import psnr

            out[m] = psnr(a, b)
        elif m == "ms_ssim":
            from ulic.evaluation.metrics import ms_ssim

            out[m] = ms_ssim(a, b)
        elif m in ("lpips_alex", "lpips_vgg"):
            from ulic.evaluation.lpips import lpips

            out[m] = lpips(a, b, m.split("_")[1])
        elif m == "dists":
            from ulic.evaluation.dists import dists

            out[m] = dists(a, b)
        elif m == "grid8":
            from ulic.evaluation.artefacts import grid8

            out[m] = grid8(a, b)
        else:
            raise UlicError(f"unknown metric {m!r}: choose from {', '.join(METRICS)}")
    return out


def image_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _cached_partial(item: Item) -> dict | None:
    """The cached result of an item made from the same image (some metrics may be missing)."""
    p = item.stem.with_suffix(".json")
    if not p.is_file() or not item.stem.with_suffix(".png").is_file():
        return None
    try:
        r = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return r if r.get("image_sha256") == image_digest(item.image) else None


def cached(item: Item) -> dict | None:
    """The cached result of an item, if complete and made from the same image and metrics."""
    r = _cached_partial(item)
    return r if r is not None and all(m in r for m in item.metrics) else None


def _completed(item: Item, r: dict) -> dict | None:
    """A cached result `r` lacking some of the metrics asked for, completed by scoring the cached
    decoded PNG (the codec does not run again); None when the PNG cannot be read."""
    try:
        rec = load_rgb(item.stem.with_suffix(".png"))
    except (OSError, ValueError):
        return None
    r.update(score(load_rgb(item.image), rec, tuple(m for m in item.metrics if m not in r)))
    write_bytes_atomic(item.stem.with_suffix(".json"), json.dumps(r, indent=1, sort_keys=True).encode())
    return r


def run_item(item: Item) -> dict:
    """Code, score and cache one item (or return its cached result, completed with any metric
    it lacks)."""
    r = _cached_partial(item)
    if r is not None and all(m in r for m in item.metrics):
        return r
    import torch

    torch.set_num_threads(1)
    r = _completed(item, r) if r is not None else None
    if r is not None:
        return r
    ref = load_rgb(item.image)
    t0 = time.perf_counter()
    rec, nbytes = code_image(item)
    seconds = time.perf_counter() - t0
    h, w = ref.shape[:2]
    r = {
        "image": Path(item.image).name,
        "image_sha256": image_digest(item.image),
        "codec": item.codec,
        "setting": item.setting,
        "bytes": nbytes,
        "bpp": 8 * nbytes / (h * w),
        "height": h,
        "width": w,
        "codec_seconds": round(seconds, 3),
    }
    r.update(score(ref, rec, item.metrics))
    buf = __import__("io").BytesIO()
    Image.fromarray(rec).save(buf, "PNG")
    write_bytes_atomic(item.stem.with_suffix(".png"), buf.getvalue())
    write_bytes_atomic(item.stem.with_suffix(".json"), json.dumps(r, indent=1, sort_keys=True).encode())
    return r


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, label: str, stream=None) -> None:
        self.total, self.done, self.label, self.t0 = total, 0, label, time.perf_counter()
        self.stream = stream if stream is not None else sys.stderr  # looked up now, not at import

    def step(self, n: int = 1) -> None:
        self.done += n
        frac = self.done / max(self.total, 1)
        el = time.perf_counter() - self.t0
        eta = el / frac - el if frac > 0 else 0
        bar = "#" * int(30 * frac)
        self.stream.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total} {el:.0f}s eta {eta:.0f}s")
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def map_workers(fn, args: list, workers: int, bar: Progress) -> list:
    """fn over args in `workers` one-thread processes (here when workers is 1), results in order;
    the bar steps once per finished call. fn must be a module-level function."""
    if not args:
        return []
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
            out = []
            for r in pool.map(fn, args):
                out.append(r)
                bar.step()
            return out
    _init_worker()
    out = []
    for a in args:
        out.append(fn(a))
        bar.step()
    return out


def run(items: list[Item], workers: int = 2, label: str = "eval", rank: Rank | None = None) -> list[dict]:
    """Run all items (cached ones are free); results in the order of `items`. Under torchrun
    each rank runs its shard of the uncached items (each item exactly once), then, after a
    barrier, every rank reads the others' results from the shared cache folder."""
    rank = rank or Rank()
    results: dict[int, dict] = {}
    todo = []
    for i, it in enumerate(items):
        r = cached(it)
        if r is None:
            todo.append(i)
        else:
            results[i] = r
    mine = [todo[k] for k in shard_indices(len(todo), rank)]
    bar = Progress(len(items) - len(todo) + len(mine), label if rank.main else f"{label} (rank {rank.rank})")
    bar.step(len(results))
    for i, r in zip(mine, map_workers(run_item, [items[i] for i in mine], workers, bar), strict=False):
        results[i] = r
    barrier(rank)
    for i in set(todo) - set(mine):
        r = cached(items[i])
        if r is None:
            raise UlicError(f"{items[i].stem}: another rank's result is missing (is --cache on a shared folder?)")
        results[i] = r
    return [results[i] for i in range(len(items))]
