"""tools/gctend.py: what survives a full collection is frozen, so the next full pass walks only what came after;
a thaw every period lets one full pass free the cycles that died while frozen.

The collector is global to a process, so each case runs in a fresh interpreter (pytest's own objects must not be
frozen, and these counts must not depend on what the suite allocated before)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(body: str) -> None:
    script = "import gc, time, weakref\nfrom portside.tools import gctend\n" + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("ok"), done.stdout + done.stderr


def test_a_full_collection_freezes_its_survivors_and_the_next_walks_only_newer_objects() -> None:
    run(
        """
        tender = gctend.GcTender(thaw_seconds=3600)
        tender.install()
        kept = [{"n": [i]} for i in range(50_000)]  # long-lived: 100,000 tracked containers
        gc.collect()
        freezes = tender.freezes
        assert freezes >= 1, freezes  # this one, and any the allocations above set off
        assert gc.get_freeze_count() >= 100_000, gc.get_freeze_count()
        assert len(gc.get_objects()) < 1_000, len(gc.get_objects())  # what a full pass would walk now
        gc.collect(0)  # a young collection freezes nothing
        assert tender.freezes == freezes
        more = [[i] for i in range(1_000)]
        assert len(gc.get_objects()) >= 1_000 and len(gc.get_objects()) < 5_000
        assert tender.stats()["gc_freezes"] == freezes and tender.stats()["gc_frozen_objects"] >= 100_000
        print("ok")
        """
    )


def test_a_cycle_that_dies_while_frozen_is_freed_after_the_thaw() -> None:
    run(
        """
        class Node:
            pass

        freed = []
        tender = gctend.GcTender(thaw_seconds=600)
        tender.install()
        a, b = Node(), Node()
        a.other, b.other = b, a
        probe = weakref.ref(a, lambda _: freed.append(True))
        gc.collect()  # a and b survive and are frozen
        assert gc.get_freeze_count() > 0
        del a, b  # now a dead cycle in the permanent generation
        gc.collect()
        assert probe() is not None and not freed  # frozen: not walked, not freed
        now = time.monotonic()
        assert tender.tick(now + 599) is False  # within the period: nothing
        assert tender.tick(now + 601) is True and tender.thaws == 1
        assert gc.get_freeze_count() == 0
        gc.collect()  # the one full pass over everything
        assert freed and probe() is None
        assert gc.get_freeze_count() > 0  # and its survivors are frozen again
        assert tender.tick(now + 700) is False  # the next thaw is a whole period later
        print("ok")
        """
    )


def test_switched_off_it_freezes_nothing_and_thaws_what_it_froze() -> None:
    run(
        """
        tender = gctend.GcTender(thaw_seconds=600)
        tender.install()
        kept = [[i] for i in range(10_000)]
        gc.collect()
        assert gc.get_freeze_count() >= 10_000
        tender.thaw_seconds = 0  # config gc.thaw_seconds = 0
        assert tender.tick() is True and gc.get_freeze_count() == 0  # back to the collector's own behaviour
        freezes = tender.freezes
        gc.collect()
        assert gc.get_freeze_count() == 0 and tender.freezes == freezes
        assert tender.tick() is False
        tender.uninstall()
        assert tender not in gc.callbacks
        print("ok")
        """
    )
