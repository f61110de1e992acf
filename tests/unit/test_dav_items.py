"""davstore.items and davstore.query in-process: derived columns (recurrence bounds, exactness), validation,
filters, expansion and free-busy."""

from __future__ import annotations

import datetime as dt

import pytest

from portside.davstore import items, query
from portside.davstore.items import Invalid, derive
from portside.davstore.query import CardFilter, CompFilter, PropFilter, TextMatch, TimeRange

HEAD = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n"
TAIL = "END:VCALENDAR\r\n"


def ev(body: str, uid: str = "u") -> str:
    return f"{HEAD}BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n{body}END:VEVENT\r\n{TAIL}"


D = dt.datetime


@pytest.mark.parametrize(
    ("body", "start", "end", "exact"),
    [
        ("DTSTART:20260105T100000Z\r\nDTEND:20260105T110000Z\r\n", D(2026, 1, 5, 10), D(2026, 1, 5, 11), True),
        ("DTSTART:20260105T100000Z\r\nDURATION:PT30M\r\n", D(2026, 1, 5, 10), D(2026, 1, 5, 10, 30), False),
        ("DTSTART;VALUE=DATE:20260105\r\n", D(2026, 1, 5), D(2026, 1, 6), False),
        ("DTSTART:20260105T100000\r\nDTEND:20260105T110000\r\n", D(2026, 1, 5, 10), D(2026, 1, 5, 11), False),
        (
            "DTSTART:20260105T100000Z\r\nDTEND:20260105T110000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\n",
            D(2026, 1, 5, 10),
            D(2026, 1, 7, 11),
            False,
        ),
        (
            "DTSTART:20260105T100000Z\r\nDTEND:20260105T110000Z\r\nRRULE:FREQ=WEEKLY;UNTIL=20260202T100000Z\r\n",
            D(2026, 1, 5, 10),
            D(2026, 2, 2, 11),
            False,
        ),
        ("DTSTART:20260105T100000Z\r\nRRULE:FREQ=YEARLY\r\n", D(2026, 1, 5, 10), None, False),
        (
            "DTSTART;TZID=Europe/Berlin:20260105T100000\r\nDTEND;TZID=Europe/Berlin:20260105T110000\r\n",
            D(2026, 1, 5, 9),
            D(2026, 1, 5, 10),
            True,
        ),
        (
            "DTSTART:20260105T100000Z\r\nDTEND:20260105T110000Z\r\nRDATE:20260301T100000Z\r\n",
            D(2026, 1, 5, 10),
            D(2026, 3, 1, 11),
            False,
        ),
    ],
)
def test_recurrence_bounds_and_exactness(body: str, start: D, end: D | None, exact: bool) -> None:
    d = derive(ev(body))
    assert (d.dtstart, d.dtend, d.exact) == (start, end, exact)
    assert d.component == "VEVENT" and d.uid == "u" and len(d.etag) == 32


def test_an_override_moved_later_widens_the_bounds() -> None:
    text = ev("DTSTART:20260105T100000Z\r\nDTEND:20260105T110000Z\r\nRRULE:FREQ=WEEKLY;COUNT=2\r\n").replace(
        TAIL,
        "BEGIN:VEVENT\r\nUID:u\r\nRECURRENCE-ID:20260112T100000Z\r\nDTSTART:20260601T100000Z\r\n"
        "DTEND:20260601T120000Z\r\nEND:VEVENT\r\n" + TAIL,
    )
    d = derive(text)
    assert d.dtstart == D(2026, 1, 5, 10) and d.dtend == D(2026, 6, 1, 12)


@pytest.mark.parametrize(
    ("text", "precondition"),
    [
        ("nonsense", "valid-calendar-data"),
        (HEAD + TAIL, "valid-calendar-object-resource"),
        (ev("DTSTART:20260105T100000Z\r\n").replace("UID:u\r\n", ""), "valid-calendar-object-resource"),
        (ev("DTSTART:junk\r\n"), "valid-calendar-data"),
        (
            HEAD + "METHOD:PUBLISH\r\n" + ev("DTSTART:20260105T100000Z\r\n")[len(HEAD) :],
            "valid-calendar-object-resource",
        ),
    ],
)
def test_invalid_calendar_objects(text: str, precondition: str) -> None:
    with pytest.raises(Invalid) as info:
        derive(text, "calendar")
    assert info.value.precondition == precondition and info.value.status == 400


def test_vcards() -> None:
    d = derive(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:c\r\nFN:Ann B\r\nN:B;Ann;;;\r\n"
        "EMAIL:a@x.org\r\nEMAIL:b@y.org\r\nEND:VCARD\r\n"
    )
    assert d.kind == "addressbook" and d.component == "VCARD" and "Ann B" in str(d.names)
    assert d.emails == "a@x.org | b@y.org"
    with pytest.raises(Invalid):
        derive("BEGIN:VCARD\r\nVERSION:2.1\r\nUID:c\r\nFN:x\r\nEND:VCARD\r\n")
    with pytest.raises(Invalid):
        derive("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:c\r\nFN:x\r\nEND:VCARD\r\n", "calendar")


def test_filters_expand_and_free_busy() -> None:
    weekly = ev("DTSTART:20260105T100000Z\r\nDTEND:20260105T110000Z\r\nRRULE:FREQ=WEEKLY;COUNT=3\r\nSUMMARY:Team\r\n")
    jan = TimeRange(D(2026, 1, 10), D(2026, 1, 13))
    in_range = CompFilter("VCALENDAR", comps=[CompFilter("VEVENT", time_range=jan)])
    assert query.matches_calendar(weekly, in_range)  # the second instance, 12 January
    assert not query.matches_calendar(
        weekly,
        CompFilter("VCALENDAR", comps=[CompFilter("VEVENT", time_range=TimeRange(D(2026, 1, 20), D(2026, 1, 26)))]),
    )
    text = CompFilter(
        "VCALENDAR", comps=[CompFilter("VEVENT", props=[PropFilter("SUMMARY", texts=[TextMatch("team")])])]
    )
    assert query.matches_calendar(weekly, text)
    octet = CompFilter(
        "VCALENDAR",
        comps=[CompFilter("VEVENT", props=[PropFilter("SUMMARY", texts=[TextMatch("team", collation="i;octet")])])],
    )
    assert not query.matches_calendar(weekly, octet)
    expanded = query.expand(weekly, TimeRange(D(2026, 1, 1), D(2026, 2, 1)))
    assert expanded.count("BEGIN:VEVENT") == 3 and "RRULE" not in expanded and expanded.count("RECURRENCE-ID") == 3
    busy = query.busy_periods(weekly, TimeRange(D(2026, 1, 1), D(2026, 1, 13)))
    assert [(s.day, e.hour, kind) for s, e, kind in busy] == [(5, 11, "BUSY"), (12, 11, "BUSY")]
    card = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:c\r\nFN:Ann\r\nEMAIL:ann@x.org\r\nEND:VCARD\r\n"
    assert query.matches_card(card, CardFilter([PropFilter("EMAIL", texts=[TextMatch("X.ORG")])]))
    assert not query.matches_card(card, CardFilter([PropFilter("EMAIL", texts=[TextMatch("x.org", negate=True)])]))
    assert query.matches_card(card, CardFilter([PropFilter("TEL", is_not_defined=True)]))
    assert items.kind_of(card) == "addressbook"
