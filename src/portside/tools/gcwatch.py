"""How long the cyclic garbage collector held this process: per-generation counts and pause time (`gc.callbacks`).

A full (generation 2) collection walks every tracked object that is not frozen; with many long-lived
sessions it can stop the event loop for tens of milliseconds, which shows up as latency everywhere. `/live/stats`
reports these counters so a bench can tell such pauses from other delays. Installed once per process; two
`perf_counter` calls per collection.
"""

from __future__ import annotations

import gc
import time
from typing import Any


class GcWatch:
    __slots__ = ("_started", "collections", "max_pause", "pause")

    def __init__(self) -> None:
        self.collections = [0, 0, 0]  # per generation
        self.pause = [0.0, 0.0, 0.0]  # seconds, per generation
        self.max_pause = 0.0  # the longest single collection, seconds
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        gen = min(max(int(info.get("generation", 0)), 0), 2)
        self.collections[gen] += 1
        self.pause[gen] += took
        self.max_pause = max(self.max_pause, took)

    def stats(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for gen in range(3):
            out[f"gc_gen{gen}_collections"] = self.collections[gen]
            out[f"gc_gen{gen}_pause_seconds"] = round(self.pause[gen], 6)
        out["gc_max_pause_ms"] = round(1000 * self.max_pause, 3)
        return out


_watch: GcWatch | None = None


def watch() -> GcWatch:
    """This process's watcher, installed on first use."""
    global _watch
    if _watch is None:
        _watch = GcWatch()
        gc.callbacks.append(_watch)
    return _watch
