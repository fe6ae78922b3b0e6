"""What the benchmark tools share: reading a WIDTHxHEIGHT size and a process's own peak memory."""

from __future__ import annotations


def parse_size(text: str) -> tuple[int, int]:
    """'768x512' -> (768, 512): width, height."""
    w, h = text.lower().split("x")
    return int(w), int(h)


def own_peak_rss_mb() -> float:
    """This process's own peak resident memory in MB: VmHWM on Linux. (ru_maxrss is the
    fallback elsewhere; on Linux it survives fork + exec, so a child would report its parent's
    peak.)"""
    try:
        with open("/proc/self/status") as f:
            line = next(v for v in f if v.startswith("VmHWM"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
