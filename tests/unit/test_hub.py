"""The live hub's fan-out decisions, without sockets: per-principal rights, filters, replay floors, holds."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from portside.auth.permissions import Actor
from portside.core.events import Event, Grants
from portside.realtime.hub import LiveHub, LiveSession, matches

OWNER_READ = 256


def event(table: str, offset: int, owner: str | None = "u1", perm: int = OWNER_READ, **data: Any) -> Event:
    return Event(offset, table, "create", f"ref-{offset}", dict(data), Grants(owner, perm), owner)


def session(ref: str, sink: list[dict[str, Any]]) -> LiveSession:
    def send(frame: dict[str, Any]) -> bool:
        sink.append(frame)
        return True

    return LiveSession(Actor(user_id=1, ref=ref), send)


def test_rights_filters_and_floors() -> None:
    hub = LiveHub(bus=None)  # type: ignore[arg-type]  # dispatch needs no bus
    got1: list[dict[str, Any]] = []
    got2: list[dict[str, Any]] = []
    s1, s2 = session("u1", got1), session("u2", got2)
    for s in (s1, s2):
        hub.subscribe(s, "a", {})
        hub.subscribe(s, "b", {"n": 2})
    assert hub.dispatch(event("a", 1)) == 1  # only the owner may read it
    assert [f["offset"] for f in got1] == [1] and got2 == []
    hub.dispatch(event("a", 2, owner=None, perm=2))  # guest read: both
    assert [f["offset"] for f in got2] == [2]
    hub.dispatch(event("b", 3, n=1))
    hub.dispatch(event("b", 4, n=2.0))  # numbers compare as numbers
    assert [f["offset"] for f in got1] == [1, 2, 4]
    # a replay of topic b up to offset 10 must not stop live events of topic a below 10
    s1.floors["b"] = 10
    hub.dispatch(event("a", 5))
    hub.dispatch(event("b", 6, n=2))
    hub.dispatch(event("b", 11, n=2))
    assert [f["offset"] for f in got1] == [1, 2, 4, 5, 11]
    # while a replay runs, live frames are parked, not sent
    s1.hold = []
    hub.dispatch(event("a", 12))
    assert [f["offset"] for f in s1.hold] == [12] and got1[-1]["offset"] == 11
    hub.unsubscribe(s1, "a")
    assert hub.dispatch(event("a", 13)) == 0


def test_full_queue_drops_the_session() -> None:
    hub = LiveHub(bus=None)  # type: ignore[arg-type]
    slow = LiveSession(Actor(user_id=1, ref="u1"), lambda frame: False)
    hub.subscribe(slow, "a", {})
    assert hub.dispatch(event("a", 1)) == 0
    assert slow.overflowed and slow.subscriptions == {} and hub.topics == {}


def test_matches_never_raises() -> None:
    odd: list[Any] = [None, True, 1, 1.0, "1", [1], {"a": 1}, float("nan")]
    for want in odd:
        for have in odd:
            assert isinstance(matches({"k": want}, "create", {"k": have}), bool)
    assert matches({"k": [1, {"a": 2}]}, "create", {"k": [1, {"a": 2}]})
    assert not matches({"k": True}, "create", {"k": 1})
    assert matches({"EventType": "update"}, "update", {}) and not matches({"EventType": "update"}, "create", {})
    assert matches({"missing": None}, "create", {})


def test_indexed_fanout_reaches_exactly_the_allowed_sessions() -> None:
    """The hub narrows each event to candidate principals (owner, groups, admins); the result must equal a
    brute-force `allowed` check over every session, also after unsubscribes."""
    import random

    from portside.auth.permissions import READ, allowed

    rng = random.Random(5)
    hub = LiveHub(bus=None)  # type: ignore[arg-type]
    inbox: dict[int, list[int]] = {}
    sessions: list[LiveSession] = []
    refs, groups = [f"u{i}" for i in range(8)], [f"g{i}" for i in range(4)]
    for i in range(60):
        ref = rng.choice([*refs, None])
        who = Actor(
            user_id=1 if ref else None,
            ref=ref,
            groups=frozenset(rng.sample(groups, rng.randint(0, 2))) if ref else frozenset(),
            is_admin=ref is not None and rng.random() < 0.05,
        )
        box = inbox.setdefault(i, [])
        s = LiveSession(who, lambda frame, box=box: box.append(frame["offset"]) is None)
        sessions.append(s)
        hub.subscribe(s, "t", {})
    for s in sessions[::7]:
        hub.unsubscribe(s, "t")
    subscribed = [i for i, s in enumerate(sessions) if "t" in s.subscriptions]
    for offset in range(1, 400):
        grants = Grants(
            owner=rng.choice([*refs, None]),
            permission=rng.choice([0, 2, 256, 256 | 32768, 32768, 16256]),
            groups=tuple((g, rng.choice([0, 32768, 2080768])) for g in rng.sample(groups, rng.randint(0, 2))),
        )
        ev = Event(offset, "t", "create", f"r{offset}", {}, grants, None)
        want = {i for i in subscribed if allowed(sessions[i].actor, READ, grants)}
        hub.dispatch(ev)
        got = {i for i in subscribed if inbox[i] and inbox[i][-1] == offset}
        assert got == want, (offset, grants)
    assert all(not inbox[i] for i in range(len(sessions)) if i not in subscribed)


class _Backlog:
    """A bus whose subscription hands out a backlog of events without ever suspending (a full buffer)."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events

    def subscribe(self) -> Any:
        events = self.events

        class Sub:
            async def __aenter__(self) -> Any:
                return self

            async def __aexit__(self, *exc: object) -> None:
                return None

            def __aiter__(self) -> Any:
                return self

            async def __anext__(self) -> Event:
                if not events:
                    await asyncio.Event().wait()  # caught up: wait for more, like a live subscription
                return events.pop(0)

        return Sub()


async def test_fan_out_of_a_backlog_hands_the_loop_back_between_events() -> None:
    got: list[dict[str, Any]] = []
    hub = LiveHub(bus=_Backlog([event("a", n) for n in range(1, 51)]))  # type: ignore[arg-type]
    hub.subscribe(session("u1", got), "a", {})
    seen: list[int] = []  # frames delivered each time another task got the loop

    async def other_request() -> None:
        while len(got) < 50:
            seen.append(len(got))
            await asyncio.sleep(0)

    await hub.start()
    try:
        await asyncio.wait_for(other_request(), 5)
    finally:
        await hub.stop()
    assert len(got) == 50
    # the other task ran while the backlog was fanned out, at most one event apart
    steps = [b - a for a, b in itertools.pairwise(seen)]
    assert len(seen) >= 49 and max(steps) <= 1, seen


def lean(
    ref: str, wire: list[tuple[str, int]], encoding: Any, sink: list[dict[str, Any]], room: int = 99
) -> LiveSession:
    """A session with a direct path: `post` records what it was handed, refusing once `room` posts were taken."""
    s = session(ref, sink)
    s.encode = encoding

    def post(encoded: Any) -> bool:
        if len(wire) >= room:
            return False
        wire.append(encoded)
        return True

    s.post = post
    return s


def test_lean_path_encodes_once_per_encoding_and_keeps_the_general_rules() -> None:
    """Plain sessions with a direct path get the event encoded once per encoding and posted; a session with
    filters, a replay floor or a replay running takes the general path with the same results; a refused post
    drops the session like a full queue."""
    calls: list[str] = []

    def enc(name: str) -> Any:
        def encode(frame: dict[str, Any]) -> tuple[str, int]:
            calls.append(name)
            return name, frame["offset"]

        return encode

    as_json, as_b64 = enc("json"), enc("b64")
    hub = LiveHub(bus=None)  # type: ignore[arg-type]
    wires: list[list[tuple[str, int]]] = [[] for _ in range(6)]
    sinks: list[list[dict[str, Any]]] = [[] for _ in range(6)]
    plain = [lean("u1", wires[i], as_json if i % 2 else as_b64, sinks[i]) for i in range(4)]
    filtered = lean("u1", wires[4], as_json, sinks[4])
    held = lean("u1", wires[5], as_json, sinks[5])
    for s in [*plain, held]:
        hub.subscribe(s, "a", {})
    hub.subscribe(filtered, "a", {"n": 2})
    held.hold = []
    assert hub.dispatch(event("a", 1, n=1)) == 4
    assert sorted(calls) == ["b64", "json"]  # once per encoding, not per socket
    assert [w for w in wires[:4]] == [[("b64", 1)], [("json", 1)], [("b64", 1)], [("json", 1)]]
    assert wires[4] == [] and sinks[4] == []  # filtered out, on the general path
    assert wires[5] == [] and [f["offset"] for f in held.hold] == [1]  # parked while the replay runs
    held.hold = None
    held.floors["a"] = 5  # a replay sent up to 5: live events at or below are skipped
    hub.dispatch(event("a", 2, n=2))
    assert [f["offset"] for f in sinks[4]] == [2] and wires[4] == []  # general path: `send`
    assert sinks[5] == [] and wires[5] == []
    hub.dispatch(event("a", 6, n=2))
    assert [f["offset"] for f in sinks[5]] == [6]  # above its floor, through `send`
    assert all(w[-1][1] == 6 for w in wires[:4]) and all(s == [] for s in sinks[:4])
    # covered bookkeeping also on the lean path: an event at or below coverage is remembered as late
    plain[0].covered["a"] = 10
    hub.dispatch(event("a", 7))
    assert plain[0].late == {"a": {7}} and plain[1].late == {}
    # a refused post: the session overflowed and is dropped from every topic
    full = lean("u1", [("x", 0)], as_json, [], room=1)
    hub.subscribe(full, "a", {})
    delivered = hub.delivered
    assert hub.dispatch(event("a", 8)) == 5  # four plain sessions and `held` (above its floor)
    assert full.overflowed and full.subscriptions == {} and hub.dropped == 1
    assert hub.delivered == delivered + 5
