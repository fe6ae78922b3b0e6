"""Pillow plugin for .ulic files: `import ulic.pillow` registers the format "ULIC".

    import ulic.pillow
    from PIL import Image
    im = Image.open("photo.ulic")              # decoded with the model's default decoder on load
    im.save("photo.ulic", bpp=0.03)            # or quality=0..100, or max_bytes=N; optimize=N, effort=E
    im = ulic.pillow.open("photo.ulic", decoder="fast", steps=None, realism=None)  # options
    Image.open("photo.ulic").configure(decoder="mse")   # the same, before the pixels are used

`im.info` holds "ulic_bytes" and "ulic_bpp" after opening (only the header is read), and
"ulic_quality" (the q byte), "ulic_decoder", "ulic_steps" and "ulic_seconds" once decoded; the
decoder reads no further than the declared image can need (`ulic.limits`). Pillow writes the
file itself when saving; for an atomic write use `ulic.api.compress` with
`ulic.imageio.save_atomic`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import IO, Any

from PIL import Image, ImageFile

from ulic import bitstream
from ulic.errors import BitstreamError
from ulic.limits import PEEK_BYTES, container_bounds

FORMAT = "ULIC"
EXTENSION = ".ulic"
MIME = "image/x-ulic"
SAVE_OPTIONS = ("quality", "bpp", "max_bytes", "optimize", "effort", "src")


def _accept(prefix: bytes) -> bool:
    """Magic of version 1 ("UL") or version 2 (lead byte 0xE_ with format version 2)."""
    if prefix[:2] == bitstream.MAGIC:
        return True
    return bool(prefix) and prefix[0] & 0xF0 == bitstream.LEAD_MAGIC and prefix[0] & 0x07 == bitstream.FORMAT_VERSION


def _tile(extents: tuple[int, int, int, int], args: tuple) -> Any:
    tile_type = getattr(ImageFile, "_Tile", None)  # Pillow >= 11 names its tile tuples
    return tile_type("ulic", extents, 0, args) if tile_type else ("ulic", extents, 0, args)


class UlicImageFile(ImageFile.ImageFile):
    """A .ulic file opened by Pillow; the pixels are decoded on first use (`load`)."""

    format = FORMAT
    format_description = "ulic learned image codec"

    def _open(self) -> None:
        assert self.fp is not None  # Pillow opens the file before calling _open
        head = self.fp.read(PEEK_BYTES)
        try:
            height, width = bitstream.peek_size(head)
        except BitstreamError as e:
            raise SyntaxError(f"not a ulic file: {e}") from None
        if height < 1 or width < 1:
            raise SyntaxError("not a ulic file: zero image size")
        self.fp.seek(0, os.SEEK_END)
        length = self.fp.tell()
        self._mode = "RGB"
        self._size = (width, height)
        self.info.update(ulic_bytes=length, ulic_bpp=8 * length / (width * height))
        self.ulic_options: dict[str, Any] = {"decoder": None, "steps": None, "realism": None}
        self.tile = [_tile((0, 0) + self.size, (self.ulic_options, self.info))]

    def configure(
        self, decoder: str | None = None, steps: int | None = None, realism: float | None = None
    ) -> UlicImageFile:
        """Choose how the pixels are decoded ("mse", "fast", "diffusion"; diffusion steps;
        realism 0..1); call before the image is loaded. Returns the image."""
        if not self.tile:
            raise ValueError("configure() must be called before the image is loaded")
        self.ulic_options.update(decoder=decoder, steps=steps, realism=realism)
        return self


class _UlicDecoder(ImageFile.PyDecoder):
    """Decodes a whole .ulic file with `ulic.api.decode` into the image."""

    _pulls_fd = True

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:  # type: ignore[override]
        from ulic.api import decode
        from ulic.imageio import to_pil
        from ulic.model_store import load_model

        options, info = self.args
        assert self.fd is not None
        head = self.fd.read(PEEK_BYTES)  # read no further than the declared image can need
        most = container_bounds(head, load_model().codec)[3]
        r = decode(head + self.fd.read(most + 1 - len(head)), **options)
        self.set_as_raw(to_pil(r.image).tobytes(), "RGB")
        info.update(
            ulic_quality=r.header.quality, ulic_decoder=r.decoder, ulic_steps=r.steps, ulic_seconds=dict(r.seconds)
        )
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """Encode with the save() keywords quality, bpp, max_bytes, optimize, effort and src."""
    from ulic.api import encode

    options = {k: im.encoderinfo[k] for k in SAVE_OPTIONS if k in im.encoderinfo}
    r = encode(im, **options)
    for notice in r.notices:
        warnings.warn(f"ulic: {notice}", stacklevel=3)
    fp.write(r.data)


def open(
    fp: str | Path | IO[bytes], decoder: str | None = None, steps: int | None = None, realism: float | None = None
) -> UlicImageFile:
    """Open a .ulic file with decoder options (see `ulic.api.decode`); pixels decode on load."""
    im = Image.open(fp, formats=[FORMAT])
    assert isinstance(im, UlicImageFile)
    return im.configure(decoder, steps, realism)


def register() -> None:
    """Register the format with Pillow (done on import; calling again is harmless)."""
    Image.register_open(FORMAT, UlicImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)
    Image.register_decoder("ulic", _UlicDecoder)


def unregister() -> None:
    """Remove the format from Pillow again (tests use it to keep Pillow's global state as found)."""
    for table in (Image.OPEN, Image.SAVE, Image.MIME):
        table.pop(FORMAT, None)
    Image.DECODERS.pop("ulic", None)
    for ext in [e for e, fmt in Image.EXTENSION.items() if fmt == FORMAT]:
        del Image.EXTENSION[ext]
    if FORMAT in Image.ID:
        Image.ID.remove(FORMAT)


register()
