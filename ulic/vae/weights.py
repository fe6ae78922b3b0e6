"""Find, verify and (if needed) download weight files; load the frozen VAE.

Third-party TAEF2 files are found in this order: an explicit folder, the ULIC_WEIGHTS_DIR
setting, the user cache ($XDG_CACHE_HOME/ulic or ~/.cache/ulic), then a download from the
public URL, verified against the pinned sha256 and written atomically into the cache.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from functools import lru_cache
from pathlib import Path

from ulic.atomic import atomic_path
from ulic.errors import WeightsError

# Public home: github.com/madebyollin/taesd (MIT). Pinned by content.
TAEF2_FILES = {
    "taef2_encoder.pth": "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
    "taef2_decoder.pth": "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
}
TAEF2_URL = "https://raw.githubusercontent.com/madebyollin/taesd/main/"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ulic"


def download(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Fetch url into dest atomically; the file appears only if its sha256 matches."""
    try:
        with atomic_path(dest) as tmp:
            h = hashlib.sha256()
            with open(tmp, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    h.update(chunk)
                    f.write(chunk)
            if h.hexdigest() != sha256:
                raise WeightsError(f"download of {url} has sha256 {h.hexdigest()[:12]}…, expected {sha256[:12]}…")
        return dest
    except OSError as e:
        raise WeightsError(f"could not download {url}: {e}") from None


def find_weight(name: str, folder: str | Path | None = None, allow_download: bool = True) -> Path:
    """Path of a verified TAEF2 file, searched as described in the module docstring."""
    expected = TAEF2_FILES[name]
    candidates = [Path(folder)] if folder else []
    if os.environ.get("ULIC_WEIGHTS_DIR"):
        candidates.append(Path(os.environ["ULIC_WEIGHTS_DIR"]))
    candidates.append(cache_dir())
    for d in candidates:
        p = d / name
        if p.is_file():
            if sha256_file(p) != expected:
                raise WeightsError(f"{p} does not match its pinned sha256 (corrupt or wrong file)")
            return p
    url = os.environ.get("ULIC_WEIGHTS_URL", TAEF2_URL).rstrip("/") + "/" + name
    if allow_download and os.environ.get("ULIC_OFFLINE", "") not in ("1", "true"):
        try:
            return download(url, cache_dir() / name, expected)
        except WeightsError as e:
            reason = str(e)
    else:
        reason = "downloads are off (ULIC_OFFLINE=1)"
    raise WeightsError(
        f"{name} not found ({reason}); put taef2_encoder.pth and taef2_decoder.pth "
        f"in {cache_dir()} or set ULIC_WEIGHTS_DIR to their folder"
    )


@lru_cache(maxsize=2)
def load_vae(folder: str | None = None):
    """The frozen TAEF2 autoencoder (float32, CPU), loaded once per process."""
    from ulic.vae.taef2 import TAEF2

    return TAEF2(find_weight("taef2_encoder.pth", folder), find_weight("taef2_decoder.pth", folder))
