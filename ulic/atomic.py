"""One atomic writer: a file under its final name is always complete.

`atomic_path(path)` yields a temporary name beside path; when the block ends normally the
temporary file is renamed over path (one rename, atomic on POSIX), and on any error it is
removed. Every internal writer (model folders, checkpoints, caches, downloads) uses it; user
outputs go through `ulic.imageio.save_atomic`, which adds the checks that protect a user's
files and uses the same rename.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".ulic-tmp-"  # in every temporary name, so a rerun can find what a killed run left
TEMP_SUFFIX = ".tmp"


def temp_name(path: Path) -> Path:
    """The hidden temporary name beside path that this process writes to."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}{TEMP_SUFFIX}")


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of these temporary names (left by a killed process)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX) and TEMP_MARK in name


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces `path` when the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
