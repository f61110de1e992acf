"""Feed documents from hostile values: every byte sequence still gives a well-formed feed (feedparser
bozo 0) and a JSON Feed that validates; stream transformations and link templates."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import feedparser
import jsonschema
import pytest

from portside.feeds import render
from portside.feeds.definition import fill_link, parse_time, transform

SCHEMA = json.loads((Path(__file__).parent.parent / "data" / "jsonfeed-1.1.schema.json").read_text())
WHEN = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)
HOSTILE = [
    "]]>",
    "<![CDATA[x]]>",
    "<script>alert(1)</script>",
    "&amp; &#0; &#x1; &bogus;",
    "\x00\x01\x08\x0b\x0c\x0e\x1f\x7f",
    "\ud800 lone surrogate \udfff",
    "\ufffe\uffff",
    b"\xff\xfe invalid \xc3\x28 utf-8",
    '" onload="x',
    "\U0001f600 emoji",
    {"json": ["value", 1]},
    12345,
]


def channel(values: list[object]) -> render.Channel:
    items = [
        render.Item(
            id=f"urn:uuid:00000000-0000-0000-0000-{i:012d}",
            url=f"https://example.org/p/{i}?a=1&b=<{i}>",
            title=render.clean(v),
            content=render.clean(v),
            published=WHEN,
            updated=WHEN,
            author=render.clean(v),
        )
        for i, v in enumerate(values)
    ]
    return render.Channel(
        id="urn:uuid:11111111-1111-1111-1111-111111111111",
        title='Feed "title" <&>]]>',
        description="\x02desc",
        home="https://example.org/?a=1&b=2",
        self_url="https://example.org/feed/x.atom?page=2",
        hub_url="https://example.org/websub",
        updated=WHEN,
        author_name="Ed <ed>",
        author_email="ed@example.org",
        next_url="https://example.org/feed/x.atom?page=3",
        prev_url="https://example.org/feed/x.atom",
        items=items,
    )


@pytest.mark.parametrize("fmt", ["rss", "atom"])
def test_hostile_values_stay_well_formed(fmt: str) -> None:
    body = render.render(fmt, channel(HOSTILE))
    d = feedparser.parse(body)
    assert d.bozo == 0, d.get("bozo_exception")
    assert d.version == ("rss20" if fmt == "rss" else "atom10")
    assert len(d.entries) == len(HOSTILE)
    assert d.entries[0].title == "]]>"
    assert d.entries[2].title == "<script>alert(1)</script>"
    assert d.entries[4].title == "\x7f"  # C0 controls dropped, DEL is legal XML
    assert "\ufffd" in d.entries[7].title
    assert d.feed.title == 'Feed "title" <&>]]>'


def test_random_bytes_never_break_xml() -> None:
    rng = random.Random(5)
    values: list[object] = [bytes(rng.randrange(256) for _ in range(40)) for _ in range(50)]
    values += ["".join(chr(rng.randrange(0x110000)) for _ in range(20)) for _ in range(50)]
    for fmt in ("rss", "atom"):
        d = feedparser.parse(render.render(fmt, channel(values)))
        assert d.bozo == 0 and len(d.entries) == 100
    doc = json.loads(render.render("json", channel(values)))
    jsonschema.validate(doc, SCHEMA)


def test_json_feed_validates_and_carries_paging() -> None:
    doc = json.loads(render.render("json", channel(HOSTILE)))
    jsonschema.validate(doc, SCHEMA)
    assert doc["next_url"] == "https://example.org/feed/x.atom?page=3"
    assert doc["hubs"] == [{"type": "WebSub", "url": "https://example.org/websub"}]
    assert doc["items"][0]["date_published"] == "2026-03-01T10:00:00Z"
    assert doc["authors"] == [{"name": "Ed <ed>", "url": "mailto:ed@example.org"}]


def test_dates() -> None:
    assert render.rfc822(WHEN) == "Sun, 01 Mar 2026 10:00:00 GMT"
    assert render.rfc3339(dt.datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == (
        "2026-03-01T10:00:00Z"
    )
    assert parse_time("2026-03-01T10:00:00.123456Z") == dt.datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)
    assert parse_time("yesterday") is None and parse_time(None) is None


def test_transformations_and_link_template() -> None:
    row = {"reference_id": "r1", "__type": "post", "writer": "Ann", "title": "T", "secret": "x", "status": "live"}
    steps = [
        {"Operation": "rename", "Attributes": {"OldName": "writer", "NewName": "author"}},
        {"Operation": "duplicate", "Attributes": {"ColumnName": "title", "NewColumnName": "headline"}},
        {"Operation": "drop", "Attributes": {"Columns": ["secret"]}},
    ]
    out = transform(row, steps)
    assert out == {
        "reference_id": "r1",
        "__type": "post",
        "author": "Ann",
        "title": "T",
        "headline": "T",
        "status": "live",
    }
    assert transform(row, [{"Operation": "filter", "Attributes": {"ColumnName": "status", "Value": "draft"}}]) is None
    kept = transform(row, [{"Operation": "select", "Attributes": {"Columns": ["title"]}}])
    assert kept == {"reference_id": "r1", "__type": "post", "title": "T"}
    assert fill_link("https://x/{reference_id}/{title}/{missing}", {"reference_id": "a b", "title": "c/d"}) == (
        "https://x/a%20b/c%2Fd/"
    )
