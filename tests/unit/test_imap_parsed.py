"""imap.parsed: ENVELOPE / BODYSTRUCTURE / BODY kept by raw-message digest, bounded, equal to a fresh parse."""

from __future__ import annotations

from portside.imap import mime, parsed


def _message(subject: str, body: str = "text") -> bytes:
    return f"From: A <a@example.org>\r\nTo: b@example.org\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()


def test_items_equal_a_fresh_parse_and_follow_the_bytes() -> None:
    cache = parsed.ParsedCache()
    one, two = _message("one"), _message("two")
    for raw in (one, two, one):
        key = cache.key(raw)
        entity = None
        for name in parsed.ITEMS:
            value, entity = cache.item(key, raw, name, entity)
            assert value == parsed.compute(mime.Entity(raw), name)
    envelope, _ = cache.item(cache.key(two), two, "ENVELOPE", None)
    assert b'"two"' in envelope and b'"one"' not in envelope


def test_a_hit_parses_nothing_and_entries_age_out() -> None:
    cache = parsed.ParsedCache(max_entries=2)
    raws = [_message(f"m{n}") for n in range(3)]
    for raw in raws:
        cache.item(cache.key(raw), raw, "BODYSTRUCTURE", None)
    # the newest two are kept: answered without an entity being made
    for raw in raws[1:]:
        assert cache.item(cache.key(raw), raw, "BODYSTRUCTURE", None)[1] is None
    # the oldest was dropped: parsed again (an entity is made and handed back)
    assert cache.item(cache.key(raws[0]), raws[0], "BODYSTRUCTURE", None)[1] is not None


def test_bounded_by_bytes() -> None:
    cache = parsed.ParsedCache(max_bytes=200)
    raws = [_message(f"subject {n}", "x" * n) for n in range(20)]
    for raw in raws:
        cache.item(cache.key(raw), raw, "ENVELOPE", None)
    assert 0 < cache._size <= 200
    assert cache._size == sum(len(v) for e in cache._entries.values() for v in e.values())
