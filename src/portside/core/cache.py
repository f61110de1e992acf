"""A small per-process cache invalidated by change events, never by time.

Writes on this node invalidate synchronously after commit (before the writer's response is sent);
writes on other nodes invalidate when their events arrive on the bus. A generation counter stops a read
that raced with an invalidation from storing the value it read before the write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from portside.core.events import Event

K = TypeVar("K")
V = TypeVar("V")


class EventCache(Generic[K, V]):
    def __init__(self, tables: Iterable[str], max_entries: int = 10_000):
        self.tables = frozenset(tables)
        self.max_entries = max_entries
        self.generation = 0
        self._values: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._values.get(key)

    def put(self, key: K, value: V, generation: int) -> None:
        """Store `value` read at `generation`; dropped if an invalidation happened meanwhile."""
        if generation != self.generation:
            return
        if len(self._values) >= self.max_entries:
            self._values.clear()
        self._values[key] = value

    def clear(self) -> None:
        self.generation += 1
        self._values.clear()

    def on_events(self, events: Iterable[Event]) -> None:
        if any(e.table in self.tables for e in events):
            self.clear()
