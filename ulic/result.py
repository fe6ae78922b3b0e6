"""A coded image as one small object: the .ulic bytes, the decoded picture, its rate, timings and
metrics. It displays itself in Jupyter (`_repr_png_`), and `ulic serve` shows the same numbers.

    r = roundtrip("photo.jpg", bpp=0.03, decoder="fast")   # encode + decode + PSNR (+ LPIPS:
                                                             # metrics=("psnr", "lpips"))
    r                                                        # a notebook shows the decoded image
    r.bpp, len(r.data), r.seconds, r.psnr                    # rate, timings, metrics
    r.save("photo.ulic"); r.save_png("photo.png")            # both written atomically

    decoded("photo.ulic", decoder="diffusion")               # decode only
    decoded("photo.ulic", reference="photo.jpg")             # ... and measure against the original
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from ulic import api
from ulic.errors import UlicError
from ulic.imageio import load_image, save_atomic, to_pil

Progress = Callable[[str, float], None]  # (stage, fraction done 0..1)
METRICS = ("psnr", "lpips")


@dataclass
class Result:
    """One image coded with ulic: bytes, decoded image, decoder used, timings and metrics."""

    data: bytes
    image: Image.Image  # decoded, 8-bit RGB
    decoder: str
    steps: int = 0
    quality: int | None = None  # the file's q byte (0..255)
    seconds: dict[str, float] = field(default_factory=dict)  # "encode" (when coded here), "decode"
    psnr: float | None = None  # dB against the original, when known
    lpips: float | None = None  # LPIPS v0.1 AlexNet, when asked for
    notices: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    @property
    def bpp(self) -> float:
        """Bits per pixel of the file: 8 x bytes / (height x width)."""
        return 8 * len(self.data) / (self.width * self.height)

    def png(self) -> bytes:
        """The decoded image as PNG bytes."""
        buf = io.BytesIO()
        self.image.save(buf, format="PNG")
        return buf.getvalue()

    def _repr_png_(self) -> bytes:
        return self.png()

    def __repr__(self) -> str:
        how = self.decoder + (f" {self.steps} steps" if self.steps else "")
        metrics = (f", PSNR {self.psnr:.2f} dB" if self.psnr is not None else "") + (
            f", LPIPS {self.lpips:.4f}" if self.lpips is not None else ""
        )
        times = ", ".join(f"{k} {v:.2f} s" for k, v in self.seconds.items())
        return (
            f"<ulic {self.width}x{self.height}: {len(self.data)} bytes, {self.bpp:.4f} bpp, "
            f"{how}{metrics}, {times}>"
        )

    def summary(self) -> dict:
        """The numbers as a JSON-ready dict."""
        return {
            "width": self.width,
            "height": self.height,
            "bytes": len(self.data),
            "bpp": self.bpp,
            "quality_byte": self.quality,
            "decoder": self.decoder,
            "steps": self.steps,
            "psnr": self.psnr,
            "lpips": self.lpips,
            "seconds": dict(self.seconds),
            "notices": list(self.notices),
        }

    def save(self, path: str | Path) -> None:
        """Write the .ulic bytes atomically."""
        save_atomic(self.data, path)

    def save_png(self, path: str | Path) -> None:
        """Write the decoded image atomically (format from the suffix, e.g. .png)."""
        save_atomic(self.image, path)


def _silent(_stage: str, _fraction: float) -> None:
    pass


def _decode(
    data: bytes, decoder: str | None, steps: int | None, realism: float | None
) -> tuple[api.DecodeResult, float]:
    t0 = time.perf_counter()
    d = api.decode(data, decoder=decoder, steps=steps, realism=realism)
    return d, time.perf_counter() - t0


def decoded(
    src: str | Path | bytes,
    decoder: str | None = None,
    steps: int | None = None,
    realism: float | None = None,
    reference=None,
    metrics: tuple[str, ...] = ("psnr",),
) -> Result:
    """Decode a .ulic file (path or bytes) into a Result; with the original image as `reference`
    (anything `ulic.api.encode` takes) the asked-for metrics are measured too."""
    data = bytes(src) if isinstance(src, (bytes, bytearray)) else api.read_file(src)
    d, seconds = _decode(data, decoder, steps, realism)
    notices: list[str] = []
    values = (
        measure(load_image(reference, notices), d.image, metrics, notices)
        if reference is not None
        else {"psnr": None, "lpips": None}
    )
    return Result(
        data,
        to_pil(d.image),
        d.decoder,
        d.steps,
        d.header.quality,
        {"decode": seconds},
        values["psnr"],
        values["lpips"],
        notices,
    )


def measure(
    ref: torch.Tensor, out: torch.Tensor, metrics: tuple[str, ...], notices: list[str]
) -> dict[str, float | None]:
    """The asked-for metrics of a decoded image against its original; an unavailable LPIPS is
    None with a notice."""
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise UlicError(f"unknown metric {sorted(unknown)[0]!r} (known: {', '.join(METRICS)})")
    if ref.shape != out.shape:
        raise UlicError(
            f"the reference is {ref.shape[3]}x{ref.shape[2]} but the decoded image is " f"{out.shape[3]}x{out.shape[2]}"
        )
    values: dict[str, float | None] = {"psnr": None, "lpips": None}
    if "psnr" in metrics:
        values["psnr"] = api.psnr(ref, out)
    if "lpips" in metrics:
        try:
            from ulic.evaluation.lpips import lpips

            values["lpips"] = lpips(ref, out)
        except UlicError as e:
            notices.append(f"LPIPS not available: {e}")
    return values


def roundtrip(
    image,
    *,
    quality: float | None = None,
    bpp: float | None = None,
    max_bytes: int | None = None,
    decoder: str | None = None,
    steps: int | None = None,
    realism: float | None = None,
    optimize: int = 0,
    metrics: tuple[str, ...] = ("psnr",),
    progress: Progress | None = None,
) -> Result:
    """Encode an image (path, bytes, PIL image or uint8 array), decode it again and measure it.
    Rate: at most one of quality (0..100), bpp or max_bytes; decoder/steps/realism as in
    `ulic.api.decode`; metrics: any of "psnr", "lpips". progress(stage, fraction) is called
    before each stage ("encoding", "decoding", "measuring") and at "done"."""
    progress = progress or _silent
    notices: list[str] = []
    progress("encoding", 0.0)
    ref = load_image(image, notices)
    e = api.encode(to_pil(ref), quality=quality, bpp=bpp, max_bytes=max_bytes, optimize=optimize)
    progress("decoding", 0.5)
    d, decode_s = _decode(e.data, decoder, steps, realism)
    progress("measuring", 0.9)
    values = measure(ref, d.image, metrics, notices)
    progress("done", 1.0)
    return Result(
        e.data,
        to_pil(d.image),
        d.decoder,
        d.steps,
        e.quality,
        {"encode": e.seconds["total"], "decode": decode_s},
        values["psnr"],
        values["lpips"],
        notices + e.notices,
    )
