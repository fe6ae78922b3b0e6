"""Reading images into RGB tensors, with the documented handling of modes and sizes.

- EXIF orientation is applied, so the decoded image is upright.
- Grayscale (L, I, I;16, F) becomes RGB with equal channels; the decoded image is RGB.
- 16-bit inputs are reduced to 8 bits (the codec is 8-bit).
- Alpha (RGBA, LA, PA) is dropped: the colour channels are kept as they are, and a notice is given.
- Palette and CMYK images are converted to RGB; animated images use their first frame (notice).
- Images smaller than 16x16 or larger than the pixel limit are rejected.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ulic.errors import InputImageError

MIN_SIDE = 16
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024  # ULIC_MAX_PIXELS overrides


def max_pixels() -> int:
    try:
        return int(os.environ.get("ULIC_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        raise InputImageError("ULIC_MAX_PIXELS must be an integer") from None


def _to_rgb(img: Image.Image, notices: list[str]) -> Image.Image:
    if getattr(img, "n_frames", 1) > 1:
        notices.append(f"image has {img.n_frames} frames; only the first is coded")
        img.seek(0)
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(np.round(a / peak * 255), 0, 255).astype(np.uint8), "L")
    elif mode == "F":
        a = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.round(a * (255 if a.max() <= 1 else 1)), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        notices.append("alpha channel dropped (ulic codes colour only)")
    return img.convert("RGB")


def load_image(src: str | Path | bytes | Image.Image | np.ndarray,
               notices: list[str] | None = None) -> torch.Tensor:
    """Any supported image -> (1, 3, H, W) float32 in [0, 1]. Notices are appended to `notices`."""
    notices = [] if notices is None else notices
    limit = max_pixels()
    if isinstance(src, np.ndarray):
        a = src
        if a.ndim == 2:
            a = np.stack([a] * 3, axis=-1)
        if a.ndim != 3 or a.shape[2] not in (3, 4) or a.dtype != np.uint8:
            raise InputImageError("array input must be uint8 with shape (H, W), (H, W, 3) or (H, W, 4)")
        if a.shape[2] == 4:
            notices.append("alpha channel dropped (ulic codes colour only)")
        img = Image.fromarray(np.ascontiguousarray(a[:, :, :3]), "RGB")
    elif isinstance(src, Image.Image):
        img = _to_rgb(src, notices)
    else:
        name = "input" if isinstance(src, bytes) else str(src)
        try:
            if not isinstance(src, bytes) and os.path.getsize(src) == 0:
                raise InputImageError(f"{name}: file is empty")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit rules
                img = Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)
                if img.width * img.height > limit:
                    raise InputImageError(f"{name}: {img.width}x{img.height} exceeds the limit of "
                                          f"{limit} pixels (set ULIC_MAX_PIXELS to raise it)")
                img.load()
                img = _to_rgb(img, notices)
        except InputImageError:
            raise
        except FileNotFoundError:
            raise InputImageError(f"{name}: no such file") from None
        except IsADirectoryError:
            raise InputImageError(f"{name}: is a directory") from None
        except (UnidentifiedImageError, Image.DecompressionBombError) as e:
            raise InputImageError(f"{name}: not a readable image ({e})") from None
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise InputImageError(f"{name}: cannot read image ({e})") from None
    w, h = img.size
    if w < MIN_SIDE or h < MIN_SIDE:
        raise InputImageError(f"image is {w}x{h}; ulic needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    if w * h > limit:
        raise InputImageError(f"image is {w}x{h}, over the limit of {limit} pixels")
    a = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255


def to_pil(x: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) in [0, 1] -> 8-bit RGB PIL image."""
    a = (x[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(a, "RGB")


def _write(f, data: bytes | Image.Image, path: Path, fmt: str | None) -> None:
    if isinstance(data, Image.Image):
        data.save(f, format=fmt or (path.suffix.lstrip(".").upper() or "PNG").replace("JPG", "JPEG"))
    else:
        f.write(data)
    f.flush()
    os.fsync(f.fileno())


def _link_unnamed(fd: int, dst: Path) -> bool:
    """Give the unnamed file open at fd the name dst (Linux linkat with AT_SYMLINK_FOLLOW)."""
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, at_symlink_follow = -100, 0x400
        return libc.linkat(at_fdcwd, f"/proc/self/fd/{fd}".encode(), at_fdcwd,
                           os.fsencode(dst), at_symlink_follow) == 0
    except (OSError, AttributeError):
        return False


def stale_temp_name(name: str) -> bool:
    """Whether a file name is one of save_atomic's temporary names (left by a killed process)."""
    return name.startswith(".") and name.endswith(".tmp") and ".ulic-tmp-" in name


def save_atomic(data: bytes | Image.Image, path: str | Path, fmt: str | None = None) -> None:
    """Write bytes or an image so that path holds either the old file or the complete new one.

    On Linux the data goes to an unnamed file (O_TMPFILE) that the kernel frees if the process
    dies, and gets a name only once complete; elsewhere a hidden temporary name is used."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.ulic-tmp-{os.getpid()}.tmp")
    fd = None
    if hasattr(os, "O_TMPFILE"):
        try:
            fd = os.open(path.parent, os.O_TMPFILE | os.O_WRONLY, 0o644)
        except OSError:
            fd = None  # filesystem without unnamed files
    try:
        linked = False
        if fd is not None:
            with open(fd, "wb", closefd=True) as f:
                _write(f, data, path, fmt)
                linked = _link_unnamed(f.fileno(), tmp)
        if not linked:
            with open(tmp, "wb") as f:
                _write(f, data, path, fmt)
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
