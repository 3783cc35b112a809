"""The highest RSS of a process while a block runs (for tests and bench/jobs.py alike)."""

from __future__ import annotations

import threading
import time

import psutil


class PeakRss:
    """Samples ``pid``'s RSS every ``every_s`` seconds while the ``with`` block runs."""

    def __init__(self, pid: int, every_s: float = 0.01) -> None:
        self.process = psutil.Process(pid)
        self.every_s = every_s
        self.peak = 0
        self.running = True
        self.thread = threading.Thread(target=self._sample)

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join()

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.every_s)
