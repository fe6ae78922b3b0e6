"""What the benchmark tools share: reading a WIDTHxHEIGHT size, a process's own peak memory and
writing their JSON."""

from __future__ import annotations

import json
from pathlib import Path


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


def emit_json(doc: dict, out: Path | None) -> None:
    """Print the document as JSON, and write it atomically to `out` when given."""
    from ulic.atomic import write_text_atomic

    text = json.dumps(doc, indent=1) + "\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, text)
    print(text, end="")
