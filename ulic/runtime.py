"""Process-wide settings that make the CPU path fast, what this machine can do (`native_bf16`,
`fast_bf16`), and which device to run on (`resolve_device`).

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

import copy
import ctypes
import ctypes.util
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import TypeVar, cast

import torch

from ulic.errors import UlicError

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


DEVICES = ("auto", "cpu", "cuda")
_device: dict[str, str | None] = {"name": None}


def set_default_device(name: str | None) -> torch.device:
    """The device `ulic.api` uses when a call names none (the CLI's --device); checked now."""
    dev = resolve_device(name)
    _device["name"] = name
    return dev


def default_device() -> torch.device:
    """set_default_device's choice, else $ULIC_DEVICE, else the CPU (the same results on every
    machine; a GPU only when asked for)."""
    return resolve_device(_device["name"] or os.environ.get("ULIC_DEVICE") or "cpu")


def resolve_device(name: str | None) -> torch.device:
    """ "cpu", "cuda", "cuda:N" or "auto" (a CUDA GPU when one is visible, else the CPU) -> a
    torch.device; a clear error when a GPU is asked for and there is none."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UlicError(f"device {name!r} asked for, but this machine has no CUDA GPU that PyTorch can use")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UlicError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        return dev
    raise UlicError(f"device must be one of auto, cpu, cuda or cuda:N, got {name!r}")


def fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 autocast is fast on `device`: a CUDA GPU that supports it, or a CPU with
    native bfloat16 (`native_bf16`)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return native_bf16()


_copies: dict[tuple[int, str], torch.nn.Module] = {}
M = TypeVar("M", bound=torch.nn.Module)


def on_device(module: M, device: torch.device) -> M:
    """The module itself on the CPU; elsewhere one cached copy per (module, device), so the
    shared CPU modules (loaded once per process) are never moved. On CUDA, TF32 is switched
    off: results then differ from the CPU's only by float rounding."""
    if device.type == "cpu":
        return module
    key = (id(module), str(device))
    if key not in _copies:
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        _copies[key] = copy.deepcopy(module).to(device)
    return cast(M, _copies[key])


def channels_last(module: M) -> M:
    """The module with its 4-D weights in channels-last (NHWC) memory format, in place: the
    faster CPU convolution path (`results/bench/vae_layout.json`); results change only by float
    rounding."""
    return module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
