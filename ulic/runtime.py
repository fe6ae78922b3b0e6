"""Process-wide settings that make the CPU path fast, and what this CPU can do (`native_bf16`).

PyTorch's CPU convolutions allocate a fresh output tensor per layer; at full resolution these
are tens to hundreds of MB (64 channels x 768 x 512 x 4 bytes = 100 MB). glibc's malloc serves
every block above its mmap threshold (at most 32 MB) with a new mmap and returns it with munmap
when freed, so each layer page-faults its output in again: on 2 cores about a fifth of all CPU
time was system time. `tune_allocator` raises the mmap and trim thresholds once per process, so
freed blocks stay in the heap and are reused: the page faults (and the system time) go, at the
price of a higher peak RSS, since freed memory is kept for reuse rather than given back
(numbers in docs/results.md, "Speed"). Set ULIC_MALLOC_TUNE=0 to leave malloc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import lru_cache
from pathlib import Path

M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap
TRIM_THRESHOLD = (1 << 31) - 1  # never give the heap's top back to the system

_state: dict[str, bool | None] = {"tuned": None}


def tune_allocator() -> bool:
    """Apply the malloc settings (glibc on Linux only, once); returns whether they are on."""
    if _state["tuned"] is not None:
        return bool(_state["tuned"])
    ok = False
    if sys.platform.startswith("linux") and os.environ.get("ULIC_MALLOC_TUNE", "1") not in ("0", "false", "no"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
        except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
            ok = False
    _state["tuned"] = ok
    return ok


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where the decoder's
    backward pass in bfloat16 autocast is about 2.7x faster than in float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
