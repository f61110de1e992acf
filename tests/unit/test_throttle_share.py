"""The throttle's cluster sharing (auth/throttle.py `share` and `remote`), node to node without Redis."""

from __future__ import annotations

import time

import pytest

from portside.auth.throttle import FAILED, Limits, LoginThrottle
from portside.errors import TooManyRequests


def pair(limits: Limits | None = None) -> tuple[LoginThrottle, LoginThrottle]:
    a, b = LoginThrottle(limits), LoginThrottle(limits)
    a.share = lambda note: b.remote(note, "node-a")
    b.share = lambda note: a.remote(note, "node-b")
    return a, b


def test_failures_count_on_the_peer() -> None:
    a, b = pair()
    for _ in range(10):
        a.begin("Victim@example.com", "198.51.100.1")
    assert b.wait("victim@example.com", "198.51.100.1") > 0
    with pytest.raises(TooManyRequests):
        b.begin("victim@example.com", "198.51.100.1")
    assert b.wait("victim@example.com", "198.51.100.2") == 0  # another address is not held back


def test_a_success_takes_its_own_count_back_on_the_peer() -> None:
    a, b = pair(Limits(account_soft=1000))  # the pair rule alone
    for _ in range(9):
        a.begin("u@example.com", "198.51.100.3")
    a.begin("u@example.com", "198.51.100.3").succeeded()
    for _ in range(9):
        b.begin("u@example.com", "198.51.100.3")  # would be refused at the 10th without the shared success
    assert b.wait("u@example.com", "198.51.100.3") == 0


@pytest.mark.parametrize(
    "note",
    [
        {},
        {"kind": FAILED, "account": 1, "address": "x", "at": time.time(), "id": 1.0},
        {"kind": FAILED, "account": "a", "address": "x", "at": "now", "id": 1.0},
        {"kind": FAILED, "account": "a", "address": "x", "at": time.time(), "id": "one"},
        {"kind": FAILED, "account": "a" * 600, "address": "x", "at": time.time(), "id": 1.0},
        {"kind": FAILED, "account": "a", "address": "x", "at": time.time() + 3600, "id": 1.0},  # from the future
        {"kind": FAILED, "account": "a", "address": "x", "at": time.time() - 3600, "id": 1.0},  # out of the window
        {"kind": "other", "account": "a", "address": "x", "at": time.time(), "id": 1.0},
    ],
)
def test_malformed_or_stale_notes_change_nothing(note: dict[str, object]) -> None:
    t = LoginThrottle()
    for i in range(20):
        t.remote({**note, "id": note.get("id", 0.0)} if i == 0 else note, "peer")
    assert t.wait("a", "x") == 0 and not t._account._hits and not t._address._hits


def test_a_failing_share_never_fails_a_login() -> None:
    t = LoginThrottle()

    def broken(note: dict[str, object]) -> None:
        raise ConnectionError("redis is down")

    t.share = broken
    t.begin("u@example.com", "198.51.100.9").succeeded()
