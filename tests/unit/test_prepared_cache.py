"""The per-process cache of compiled statements shared by core/loopsql.py and core/pgdirect.py."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from portside.core import loopsql


def test_a_statement_is_compiled_once_per_key_none_included_and_the_cache_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compiled: list[Any] = []

    def prepare(dialect: sa.Dialect, stmt: Any, keys: Any) -> str | None:
        compiled.append(stmt)
        return None if stmt == "cannot" else f"sql:{stmt}"

    cache = loopsql.PreparedCache(prepare)
    dialect = sqlite.dialect()
    assert cache.get(dialect, "a", lambda: "A", None) == "sql:A"
    assert cache.get(dialect, "a", lambda: "other", None) == "sql:A"  # by key: not built again
    assert cache.get(dialect, "n", lambda: "cannot", None) is None
    assert cache.get(dialect, "n", lambda: "cannot", None) is None  # a refusal is remembered too
    assert compiled == ["A", "cannot"]
    monkeypatch.setattr(loopsql, "PREPARED_MAX", 3)
    for key in "bcd":  # full at 3: the fourth key starts it over
        cache.get(dialect, key, lambda k=key: k.upper(), None)
    cache.get(dialect, "a", lambda: "A2", None)
    assert compiled[-1] == "A2", "the cache did not start over when full"
    assert len(cache._items) <= 3
