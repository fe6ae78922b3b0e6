"""Reading images into RGB tensors, and writing outputs safely.

Reading (the documented handling of modes and sizes):
- Inputs: a path (a regular file), bytes, a binary file object, a PIL image or a uint8 array.
- EXIF orientation is applied, so the decoded image is upright.
- Grayscale (L, I, I;16, F) becomes RGB with equal channels; the decoded image is RGB.
- 16-bit inputs are reduced to 8 bits (the codec is 8-bit).
- Alpha (RGBA, LA, PA, RGBa, La) is dropped: the colour channels are kept as they are (notice).
- Palette and CMYK images are converted to RGB; animated images use their first frame (notice).
- Images smaller than 16x16, or over the limits of `ulic.limits` (checked from the header,
  before the pixels are decoded), are rejected; so are PNGs whose pixel data ends early and
  JPEGs shorter than one bit per 8x8 block (Pillow would fill the rest silently).

Writing (`save_atomic`): the output appears complete or not at all; a replaced file keeps its
mode and owner; devices, folders, the input itself and files with other hard links are refused.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import stat
import struct
import sys
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ulic.atomic import temp_name
from ulic.errors import InputImageError, OutputError, UlicError
from ulic.limits import DEFAULT_MAX_PIXELS, check_size, max_pixels, stat_input  # noqa: F401 (re-exported)
from ulic.pixels import to_uint8_range

MIN_SIDE = 16
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray | IO[bytes]
# what Pillow's plugins raise on damaged or hostile files
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    struct.error,
    zlib.error,
)
_GREY_16 = ("I;16", "I;16B", "I;16L", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_ALPHA_NOTICE = "alpha channel dropped (ulic codes colour only)"


# -- reading ------------------------------------------------------------------------------------
def _check_dims(width: int, height: int, name: str | None) -> None:
    prefix = f"{name}: " if name else ""
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InputImageError(
            f"{prefix}image is {width}x{height}; ulic needs at least " f"{MIN_SIDE}x{MIN_SIDE} pixels"
        )
    check_size(height, width, InputImageError, f"{prefix}image")


def _convert_rgb(img: Image.Image) -> Image.Image:
    """img.convert("RGB"), through the straight-alpha mode for premultiplied modes (La)."""
    for via in (None, "LA", "RGBA"):
        try:
            return (img if via is None else img.convert(via)).convert("RGB")
        except ValueError:
            continue
    raise InputImageError(f"image mode {img.mode} is not supported")


def _to_rgb(img: Image.Image, notices: list[str]) -> Image.Image:
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        notices.append(f"image has {frames} frames; only the first is coded")
        img.seek(0)
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in _GREY_16:
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(np.round(a / peak * 255), 0, 255).astype(np.uint8), "L")
    elif mode == "F":
        a = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.round(a * (255 if a.max() <= 1 else 1)), 0, 255).astype(np.uint8), "L")
    if img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info):
        notices.append(_ALPHA_NOTICE)
    return _convert_rgb(img)


def _from_array(a: np.ndarray, notices: list[str]) -> Image.Image:
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise InputImageError("array input must be uint8 with shape (H, W), (H, W, 3) or (H, W, 4)")
    _check_dims(a.shape[1], a.shape[0], None)
    if a.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(a), "L").convert("RGB")
    if a.shape[2] == 4:
        notices.append(_ALPHA_NOTICE)
    return Image.fromarray(np.ascontiguousarray(a[:, :, :3]), "RGB")


def _from_pil(img: Image.Image, notices: list[str]) -> Image.Image:
    try:
        _check_dims(img.width, img.height, None)
        img.load()  # a closed or broken image fails here
        return _to_rgb(img, notices)
    except UlicError:
        raise
    except _DECODE_ERRORS as e:
        raise InputImageError(f"cannot read the PIL image ({e})") from None


def quiet_pillow_logs() -> None:
    """Keep Pillow's logged errors (a TIFF plugin's, on damaged files) off stderr: for
    applications whose errors are one line of their own. Idempotent."""
    log = logging.getLogger("PIL")
    if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
        log.addHandler(logging.NullHandler())


@contextlib.contextmanager
def _quiet_c_stderr(quiet: bool = True):
    """Meanwhile, send what C libraries print to stderr (libtiff's decoding errors) to
    /dev/null: the error that follows is ulic's one line."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _decode(opener: Callable[[], IO[bytes]], name: str, notices: list[str]) -> Image.Image:
    """Decode an encoded image after checking its header: the size limits, and for PNG that its
    pixel data is complete. opener gives a fresh binary file each call."""
    try:
        with warnings.catch_warnings(), opener() as f:
            warnings.simplefilter("ignore")  # Pillow's warnings (bombs: our limit rules) are not errors
            img = Image.open(f)
            _check_dims(img.width, img.height, name)
            if img.format in _COMPLETENESS_CHECKS:
                with opener() as g:
                    _COMPLETENESS_CHECKS[img.format](g, name)
            with _quiet_c_stderr(img.format == "TIFF"):
                img.load()
                return _to_rgb(img, notices)
    except UlicError:
        raise
    except UnidentifiedImageError:
        raise InputImageError(f"{name}: not a readable image (unknown format or damaged header)") from None
    except Image.DecompressionBombError as e:
        raise InputImageError(f"{name}: image exceeds the pixel limit ({e})") from None
    except _DECODE_ERRORS as e:
        raise InputImageError(f"{name}: cannot read image ({e})") from None


def _path_opener(path: str | os.PathLike) -> Callable[[], IO[bytes]]:
    if stat_input(os.fspath(path), InputImageError).st_size == 0:
        raise InputImageError(f"{path}: file is empty")
    return lambda: open(path, "rb")


def _read_stream(f) -> bytes:
    try:
        data = f.read()
    except (OSError, ValueError) as e:
        raise InputImageError(f"cannot read the file object ({e})") from None
    if not isinstance(data, (bytes, bytearray)):
        raise InputImageError("file object input must be opened in binary mode")
    return bytes(data)


def _open_any(src: ImageSource, notices: list[str]) -> Image.Image:
    if isinstance(src, np.ndarray):
        return _from_array(src, notices)
    if isinstance(src, Image.Image):
        return _from_pil(src, notices)
    if isinstance(src, (str, os.PathLike)):
        return _decode(_path_opener(src), str(src), notices)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    elif callable(getattr(src, "read", None)):
        data = _read_stream(src)
    else:
        raise InputImageError(
            f"cannot read an image from {type(src).__name__} (give a path, bytes, "
            "a binary file object, a PIL image or a uint8 array)"
        )
    return _decode(lambda: io.BytesIO(data), "input", notices)


def load_image(src: ImageSource, notices: list[str] | None = None) -> torch.Tensor:
    """Any supported image -> (1, 3, H, W) float32 in [0, 1]. Notices are appended to `notices`."""
    notices = [] if notices is None else notices
    img = _open_any(src, notices)
    _check_dims(img.width, img.height, None)
    a = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255


# -- PNG completeness -------------------------------------------------------------------------
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_CHUNK = 1 << 20


def png_pixel_bytes(width: int, height: int, depth: int, colour: int, interlace: int) -> int:
    """Bytes of filtered pixel data (one filter byte per row) that a PNG header declares."""
    bits = depth * _PNG_CHANNELS.get(colour, 4)
    total = 0
    for x0, y0, dx, dy in _ADAM7 if interlace else ((0, 0, 1, 1),):
        w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if w > 0 and h > 0:
            total += h * (1 + (w * bits + 7) // 8)
    return total


def _inflate_count(f: IO[bytes], length: int, inflater, budget: int) -> int:
    """Feed the next `length` bytes of f to inflater (then skip to their end); returns how many
    bytes it produced, counting no further than about `budget`."""
    n = 0
    while length > 0 and n < budget and not inflater.eof:
        data = f.read(min(length, _INFLATE_CHUNK))
        if not data:
            return n
        length -= len(data)
        while n < budget:
            out = inflater.decompress(data, _INFLATE_CHUNK)
            n += len(out)
            data = inflater.unconsumed_tail
            if not data and len(out) < _INFLATE_CHUNK:
                break
    f.seek(length, 1)
    return n


def check_png_complete(f: IO[bytes], name: str) -> None:
    """Raise InputImageError if a PNG's zlib stream holds less pixel data than its header
    declares (Pillow leaves the missing rows black). Streams, without keeping the pixels."""
    if f.read(8) != PNG_SIGNATURE:
        return
    need, got, inflater, seen_idat = None, 0, zlib.decompressobj(), False
    while need is None or got <= need:
        head = f.read(8)
        if len(head) < 8:
            break
        length, ctype = struct.unpack(">I4s", head)
        if ctype == b"IHDR" and length == 13 and need is None:
            w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", f.read(13))
            need = png_pixel_bytes(w, h, depth, colour, interlace)
            f.seek(4, 1)
        elif ctype == b"IDAT" and need is not None:
            seen_idat = True
            got += _inflate_count(f, length, inflater, need + 1 - got)
            f.seek(4, 1)
        elif seen_idat or ctype == b"IEND":
            break
        else:
            f.seek(length + 4, 1)
    if need is not None and got < need:
        raise InputImageError(
            f"{name}: image data is incomplete: {got} of the {need} bytes of " "pixel data that its PNG header declares"
        )


# -- JPEG size --------------------------------------------------------------------------------------
_JPEG_HUFFMAN_FRAMES = (0xC0, 0xC1, 0xC2)  # baseline, extended, progressive (not arithmetic-coded)
_JPEG_NO_LENGTH = (0x01, 0xD8, *range(0xD0, 0xD8))


def _jpeg_frame(f: IO[bytes]) -> tuple[int, int, int, list[tuple[int, int]]] | None:
    """(frame marker, width, height, [(h, v) sampling of each component]) from a JPEG's frame
    header, or None where there is none before the first scan."""
    if f.read(2) != b"\xff\xd8":
        return None
    while True:
        m = f.read(2)
        if len(m) < 2 or m[0] != 0xFF:
            return None
        if m[1] == 0xFF:  # fill byte
            f.seek(-1, 1)
            continue
        if m[1] in _JPEG_NO_LENGTH:
            continue
        if m[1] in (0xDA, 0xD9):
            return None
        (length,) = struct.unpack(">H", f.read(2))
        if 0xC0 <= m[1] <= 0xCF and m[1] not in (0xC4, 0xC8, 0xCC):
            seg = f.read(length - 2)
            _, height, width, n = struct.unpack(">BHHB", seg[:6])
            return m[1], width, height, [(seg[7 + 3 * i] >> 4, seg[7 + 3 * i] & 15) for i in range(n)]
        f.seek(length - 2, 1)


def jpeg_min_bytes(f: IO[bytes]) -> int | None:
    """The fewest bytes a Huffman-coded JPEG with this frame header can have: every 8x8 block of
    every component codes at least one DC symbol, one bit or more. None when not such a JPEG."""
    try:
        frame = _jpeg_frame(f)
    except (struct.error, IndexError, ValueError, OSError):
        return None  # malformed: Pillow's own reading decides
    if frame is None or frame[0] not in _JPEG_HUFFMAN_FRAMES or not frame[3]:
        return None
    _, width, height, sampling = frame
    hmax, vmax = max(h for h, _ in sampling), max(v for _, v in sampling)
    if min(min(hv) for hv in sampling) == 0:
        return None
    blocks = sum(_ceil(_ceil(width * h, hmax), 8) * _ceil(_ceil(height * v, vmax), 8) for h, v in sampling)
    return blocks // 8


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def check_jpeg_size(f: IO[bytes], name: str) -> None:
    """Raise InputImageError if a JPEG is shorter than the image its frame header declares can be
    (libjpeg fills missing blocks with grey, without an error)."""
    need = jpeg_min_bytes(f)
    size = f.seek(0, 2)
    if need is not None and size < need:
        raise InputImageError(
            f"{name}: image data is incomplete: the image its JPEG header declares "
            f"takes at least {need} bytes, the file has {size}"
        )


_COMPLETENESS_CHECKS = {"PNG": check_png_complete, "JPEG": check_jpeg_size, "MPO": check_jpeg_size}


def to_pil(x: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) in [0, 1] -> 8-bit RGB PIL image."""
    a = to_uint8_range(x)[0].to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(a, "RGB")


# -- writing ------------------------------------------------------------------------------------
OUTPUT_FORMATS = {
    ".png": "PNG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".ppm": "PPM",
    ".webp": "WEBP",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
}


def image_format(path: str | Path) -> str:
    """Pillow's format name for an image output path, from its suffix; OutputError if unsupported."""
    suffix = Path(path).suffix.lower()
    Image.init()
    fmt = OUTPUT_FORMATS.get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        known = ", ".join(s for s, f in OUTPUT_FORMATS.items() if f in Image.SAVE)
        raise OutputError(f"{path}: unsupported output format {suffix or '(no suffix)'!r} (use one of {known})")
    return fmt


def _same_file(st: os.stat_result, other: str | os.PathLike) -> bool:
    try:
        o = os.stat(other)
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (o.st_dev, o.st_ino)


def check_output(path: str | Path, source: object = None) -> Path:
    """The real file that writing `path` will create or replace (symbolic links followed), after
    checking that this is safe: its folder exists and is writable, and an existing file is a
    regular file, is not `source` (the input, when it is a path) and has no other hard links."""
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        raise OutputError(f"{path}: folder {Path(path).parent} does not exist")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: folder {Path(path).parent} is not writable")
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{path}: exists and is not a regular file; ulic replaces only regular files")
    if isinstance(source, (str, os.PathLike)) and _same_file(st, source):
        raise OutputError(f"{path}: is the input file; choose another output")
    if st.st_nlink > 1:
        raise OutputError(
            f"{path}: has {st.st_nlink} hard links, which replacing it would break "
            "(remove it first or choose another output)"
        )
    return target


def _adopt_owner_and_mode(fd: int, target: Path) -> None:
    """Give the new file at fd the owner, group and permission bits of the file it replaces."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return
    for uid in (st.st_uid, -1):  # a non-root user can only keep the group
        try:
            os.fchown(fd, uid, st.st_gid)
            break
        except PermissionError:
            continue
    os.fchmod(fd, stat.S_IMODE(st.st_mode))


def _fill(f, data: bytes | Image.Image, target: Path, fmt: str | None) -> None:
    if isinstance(data, Image.Image):
        data.save(f, format=fmt)
    else:
        f.write(data)
    _adopt_owner_and_mode(f.fileno(), target)
    f.flush()
    os.fsync(f.fileno())


def _link_unnamed(fd: int, dst: Path) -> bool:
    """Give the unnamed file open at fd the name dst (Linux linkat with AT_SYMLINK_FOLLOW)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, at_symlink_follow = -100, 0x400
        return libc.linkat(at_fdcwd, f"/proc/self/fd/{fd}".encode(), at_fdcwd, os.fsencode(dst), at_symlink_follow) == 0
    except (OSError, AttributeError):
        return False


def _write_temp(data: bytes | Image.Image, target: Path, fmt: str | None, tmp: Path) -> None:
    """Write the complete data under the name tmp: through an unnamed file (O_TMPFILE) that only
    gets the name once complete, where the filesystem has them."""
    if hasattr(os, "O_TMPFILE"):
        try:
            fd = os.open(target.parent, os.O_TMPFILE | os.O_WRONLY, 0o666)
        except OSError:
            fd = None  # filesystem without unnamed files
        if fd is not None:
            with open(fd, "wb", closefd=True) as f:
                _fill(f, data, target, fmt)
                if _link_unnamed(f.fileno(), tmp):
                    return
    with open(tmp, "wb") as f:
        _fill(f, data, target, fmt)


def save_atomic(data: bytes | Image.Image, path: str | Path, fmt: str | None = None, source: object = None) -> None:
    """Write bytes or an image so that path holds either the old file or the complete new one.

    The checks of `check_output` come first (source: the input, never to be replaced). Images
    are saved in the format of path's suffix unless fmt is given. On Linux the data goes to an
    unnamed file (O_TMPFILE) that the kernel frees if the process dies, and gets a name only
    once complete; elsewhere a hidden temporary name is used. A replaced file's mode and owner
    are kept. Every failure is an OutputError naming path."""
    target = check_output(path, source)
    if isinstance(data, Image.Image):
        fmt = fmt or image_format(path)
    tmp = temp_name(target)
    try:
        _write_temp(data, target, fmt, tmp)
        check_output(path, source)  # again: the target may have changed meanwhile
        os.replace(tmp, target)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, (OSError, ValueError, KeyError)):  # Pillow's save raises all three
            raise OutputError(f"{path}: cannot write ({getattr(e, 'strerror', None) or e})") from None
        raise


def list_images(root: str | Path, recursive: bool = False) -> list[Path]:
    """The image files (by suffix, case-insensitive) in a folder, or under it with `recursive`,
    sorted; hidden files and folders skipped. UlicError if there is no folder or no image."""
    d = Path(root)
    if not d.is_dir():
        raise UlicError(f"{d}: not a folder of images")
    files = d.rglob("*") if recursive else d.iterdir()
    found = sorted(
        p
        for p in files
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(d).parts)
    )
    if not found:
        raise UlicError(f"{d}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return found
