"""Per-stage wall times of one encode or decode (the pipeline's stage-timing hook)."""

from __future__ import annotations

import time


class StageTimer:
    """`mark(name)` ends the stage that began at the previous mark (or at creation) and adds its
    seconds under `name`; `seconds` holds them in pipeline order, `total` their sum."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.last
        self.last = now

    def total(self) -> float:
        return self.last - self.start
