"""Short full collections on a long-running server: what survives a full collection is frozen.

CPython 3.11's cyclic collector stops the whole process for a full (generation 2) pass, and that pass walks every
tracked object that is not frozen. A node holding a thousand /live sockets keeps ~300,000 such objects (each
connection's protocol, tasks, coroutines and buffers): one pass took 178-192 ms on the bench machine
(bench/live.py --fixed, "loop held"), once every 20-60 s under load: every request and delivery in flight
waited for it. Start-up already freezes what it built (runtime.py).

`GcTender` freezes again after every full collection: its survivors are exactly the objects alive then (the
garbage was just freed), so they move to the permanent generation and the next full pass walks only what
became long-lived since. A frozen object that later dies in a reference cycle is not freed until the tender
thaws: every `thaw_seconds` (default 900) it moves the permanent generation back (`gc.unfreeze`), the next
full collection walks everything once, frees those cycles, and its survivors are frozen again. Objects freed by
reference counting (most of them) are freed as usual, frozen or not.

So a long pause happens once per thaw period instead of once per minute, and memory held by dead cycles is
bounded by what dies in one period. `thaw_seconds` 0 disables the tender (the collector's own behaviour).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

from portside import log

logger = log.get("gc")

THAW_SECONDS = 900


class GcTender:
    __slots__ = ("_frozen_at_thaw", "_installed", "_thawed_at", "freezes", "thaw_seconds", "thaws")

    def __init__(self, thaw_seconds: float = THAW_SECONDS):
        self.thaw_seconds = thaw_seconds
        self.freezes = 0
        self.thaws = 0
        self._thawed_at = time.monotonic()
        self._frozen_at_thaw = 0  # `freezes` when it last thawed
        self._installed = False

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        """gc callback: after a full collection (the collector's lists are settled at "stop"), freeze."""
        if phase == "stop" and info.get("generation") == 2 and self.thaw_seconds > 0:
            gc.freeze()
            self.freezes += 1

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self)
            self._installed = False

    def tick(self, now: float | None = None) -> bool:
        """Thaw when the period is over (the next full collection then walks everything once), or at once when
        the tender was switched off after it froze. True if it thawed."""
        now = time.monotonic() if now is None else now
        if self.thaw_seconds > 0 and now - self._thawed_at < self.thaw_seconds:
            return False
        if self.thaw_seconds <= 0 and self.freezes == self._frozen_at_thaw:
            return False
        self._frozen_at_thaw = self.freezes
        self._thawed_at = now
        gc.unfreeze()
        self.thaws += 1
        return True

    async def run(self, period: Callable[[], float]) -> None:
        """Tick until cancelled; `period()` is read on every tick (the config may change it)."""
        while True:
            self.thaw_seconds = period()
            await asyncio.sleep(max(1.0, min(self.thaw_seconds or 60.0, 60.0)))
            self.thaw_seconds = period()
            if self.tick():  # (no count: gc.get_freeze_count() walks every frozen object)
                logger.debug("gc: thawed the frozen generation for one full pass")

    def stats(self) -> dict[str, float]:
        return {"gc_frozen_objects": gc.get_freeze_count(), "gc_freezes": self.freezes, "gc_thaws": self.thaws}


_tender: GcTender | None = None


def tender() -> GcTender:
    """This process's tender (one per process: the collector is global)."""
    global _tender
    if _tender is None:
        _tender = GcTender()
    return _tender
