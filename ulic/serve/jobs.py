"""Coding jobs of `ulic serve`: one worker thread (the codec uses every core already), a bounded
queue, and the last few results kept in memory for display and download."""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ulic.errors import UlicError
from ulic.result import Result

log = logging.getLogger("ulic.serve")


@dataclass
class Job:
    """One uploaded image and what became of it."""

    name: str  # the upload's file name, for display and download names
    image: bytes
    params: dict[str, Any]  # keywords of ulic.result.roundtrip
    id: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    state: str = "queued"  # queued, running, done, failed
    stage: str = "queued"
    progress: float = 0.0
    error: str | None = None
    original_png: bytes | None = None
    result: Result | None = None

    def report(self, stage: str, fraction: float) -> None:
        """Progress callback of ulic.result.roundtrip."""
        self.stage, self.progress = stage, fraction


class JobStore:
    """Runs jobs one at a time with `work(job)`; keeps the newest `keep` jobs; refuses new ones
    while `max_waiting` wait."""

    def __init__(self, work: Callable[[Job], None], keep: int = 8, max_waiting: int = 3) -> None:
        self.work, self.keep, self.max_waiting = work, keep, max_waiting
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ulic-serve")

    def submit(self, job: Job) -> Job:
        with self.lock:
            waiting = sum(j.state == "queued" for j in self.jobs.values())
            if waiting >= self.max_waiting:
                raise UlicError(f"the server is busy with {waiting} waiting images; try again shortly")
            self.jobs[job.id] = job
            while len(self.jobs) > self.keep:
                oldest = next(iter(self.jobs.values()))
                if oldest.state in ("queued", "running"):
                    break
                self.jobs.popitem(last=False)
        self.pool.submit(self._run, job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def _run(self, job: Job) -> None:
        job.state = "running"
        try:
            self.work(job)
            job.state = "done"
        except UlicError as e:
            job.error, job.state = str(e), "failed"
        except Exception as e:  # a bug must not stop the server: report it and keep serving
            log.exception("job %s failed", job.id)
            job.error, job.state = f"internal error: {type(e).__name__}: {e}", "failed"
        finally:
            job.image = b""  # the upload is not needed any more
