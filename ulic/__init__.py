"""ulic: a learned image codec for ultra-low bitrates.

    import ulic
    data = ulic.compress("photo.png", bpp=0.03)     # .ulic bytes
    image = ulic.decompress(data)                    # PIL image

The functions are those of `ulic.api` (loaded on first use, so `import ulic` stays fast).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["compress", "decompress", "encode", "decode", "read_file", "psnr"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ulic import api

        return getattr(api, name)
    raise AttributeError(f"module 'ulic' has no attribute {name!r}")
