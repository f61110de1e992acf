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


class DependentCache(Generic[K, V]):
    """Entries that each depend on some tables; an event on a table drops exactly the entries using it."""

    def __init__(self, max_entries: int = 10_000):
        self.max_entries = max_entries
        self._values: dict[K, V] = {}
        self._by_table: dict[str, set[K]] = {}
        self._generations: dict[str, int] = {}

    def generation(self, tables: Iterable[str]) -> tuple[int, ...]:
        return tuple(self._generations.get(t, 0) for t in tables)

    def get(self, key: K) -> V | None:
        return self._values.get(key)

    def put(self, key: K, value: V, tables: tuple[str, ...], generation: tuple[int, ...]) -> None:
        if generation != self.generation(tables):
            return  # one of the tables changed while the value was being computed
        if len(self._values) >= self.max_entries:
            self._values.clear()
            self._by_table.clear()
        self._values[key] = value
        for t in tables:
            self._by_table.setdefault(t, set()).add(key)

    def on_events(self, events: Iterable[Event]) -> None:
        for table in {e.table for e in events}:
            self._generations[table] = self._generations.get(table, 0) + 1
            for key in self._by_table.pop(table, ()):
                self._values.pop(key, None)
