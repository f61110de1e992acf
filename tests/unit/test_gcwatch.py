"""tools/gcwatch.py: the cyclic collector's runs and pauses, per generation."""

from __future__ import annotations

import gc

from portside.tools import gcwatch


def test_collections_are_counted_per_generation_with_their_pause() -> None:
    watch = gcwatch.watch()
    assert gcwatch.watch() is watch and gc.callbacks.count(watch) == 1  # installed once per process
    before = watch.stats()
    gc.collect(2)
    gc.collect(0)
    after = watch.stats()
    assert after["gc_gen2_collections"] == before["gc_gen2_collections"] + 1
    assert after["gc_gen0_collections"] >= before["gc_gen0_collections"] + 1
    assert after["gc_gen2_pause_seconds"] > before["gc_gen2_pause_seconds"]
    full = 1000 * (after["gc_gen2_pause_seconds"] - before["gc_gen2_pause_seconds"])
    assert after["gc_max_pause_ms"] >= full - 0.002  # both rounded to the microsecond
