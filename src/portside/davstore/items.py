"""Parse and validate one calendar object (iCalendar, RFC 5545 + RFC 4791 §4.1) or one vCard (3.0 / 4.0),
and derive the indexed columns from it. A malformed object raises `Invalid` (never stored half).

Times are stored as naive UTC; floating times and dates are read as UTC (query windows are widened by a
day in SQL and checked exactly afterwards, see davstore.query).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import icalendar
import vobject
from dateutil import rrule

from portside.errors import BadRequest, Kind

CALENDAR_COMPONENTS = ("VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY")
MAX_COUNT_EXPANSION = 5000  # a COUNT rule longer than this has an open upper bound in the index
VCARD_VERSIONS = ("3.0", "4.0")


class Invalid(BadRequest):
    """The object is not valid calendar/address data; `precondition` names the RFC element."""

    def __init__(self, detail: str, precondition: str):
        super().__init__(detail, kind=Kind.VALIDATION_FAILED)
        self.precondition = precondition


@dataclass
class Derived:
    """The columns an object contributes to its row."""

    kind: str  # "calendar" | "addressbook"
    uid: str
    component: str
    etag: str
    dtstart: dt.datetime | None = None
    dtend: dt.datetime | None = None
    summary: str | None = None
    names: str | None = None
    emails: str | None = None
    exact: bool = False  # the index bounds are the exact span (davstore.query answers in SQL)

    def columns(self) -> dict[str, Any]:
        return {
            "uid": self.uid[:255],
            "component": self.component,
            "etag": self.etag,
            "dtstart": self.dtstart,
            "dtend": self.dtend,
            "summary": (self.summary or "")[:500] or None,
            "contact_names": (self.names or "")[:1000] or None,
            "contact_emails": (self.emails or "")[:1000] or None,
            "bounds_exact": self.exact,
        }


def etag_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def kind_of(text: str) -> str:
    head = text.lstrip("\ufeff \r\n\t")[:20].upper()
    return "addressbook" if head.startswith("BEGIN:VCARD") else "calendar"


def decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the object is not UTF-8", "valid-calendar-data") from None


def derive(text: str, kind: str | None = None) -> Derived:
    """Validate `text` as an object of `kind` (guessed from its first line when None) and derive its columns."""
    found = kind_of(text)
    if kind is not None and kind != found:
        pre = "supported-address-data" if kind == "addressbook" else "supported-calendar-data"
        raise Invalid(f"a {found} object cannot be stored in a {kind} collection", pre)
    return _derive(text, found)


@functools.lru_cache(maxsize=64)
def _derive(text: str, kind: str) -> Derived:
    """The edge validates before it writes and the write hook derives again: the second parse is a cache hit.
    (Results are never mutated; a failure is not cached.)"""
    return derive_card(text) if kind == "addressbook" else derive_calendar(text)


# -- iCalendar ---------------------------------------------------------------------------------------------


def parse_calendar(text: str) -> icalendar.Calendar:
    try:
        cal = icalendar.Calendar.from_ical(text)
    except Exception as exc:  # the library raises ValueError, IndexError, KeyError... on bad input
        raise Invalid(f"invalid iCalendar data: {type(exc).__name__}", "valid-calendar-data") from None
    if not isinstance(cal, icalendar.Calendar) or cal.name != "VCALENDAR":
        raise Invalid("the object is not a VCALENDAR", "valid-calendar-data")
    for comp in cal.walk():
        errors = getattr(comp, "errors", None)
        if errors:
            raise Invalid(f"invalid property {errors[0][0]} in {comp.name}", "valid-calendar-data")
    return cal


def derive_calendar(text: str) -> Derived:
    cal = parse_calendar(text)
    if "METHOD" in cal:
        raise Invalid("a stored calendar object has no METHOD", "valid-calendar-object-resource")
    comps = [c for c in cal.subcomponents if c.name in CALENDAR_COMPONENTS]
    if not comps:
        raise Invalid("the calendar holds no VEVENT, VTODO or VJOURNAL", "valid-calendar-object-resource")
    names = {c.name for c in comps}
    if len(names) > 1:
        raise Invalid("one calendar object holds one component type", "valid-calendar-object-resource")
    uids = {str(c.get("UID", "")) for c in comps}
    if len(uids) != 1 or "" in uids:
        raise Invalid("every component needs the same UID", "valid-calendar-object-resource")
    uid = uids.pop()
    master = next((c for c in comps if "RECURRENCE-ID" not in c), comps[0])
    try:
        start, end = _bounds(comps)
    except Invalid:
        raise
    except Exception as exc:
        raise Invalid(f"invalid dates: {type(exc).__name__}", "valid-calendar-data") from None
    summary = master.get("SUMMARY")
    out = Derived(
        "calendar", uid, str(master.name), etag_of(text), start, end, str(summary) if summary is not None else None
    )
    out.exact = _exact(comps)
    return out


def _exact(comps: list[Any]) -> bool:
    """One VEVENT without recurrence whose times are all absolute (UTC or zoned): its [dtstart, dtend) in the
    index is exactly its time span, so a time-range query is answered in SQL without parsing it."""
    if len(comps) != 1 or comps[0].name != "VEVENT":
        return False
    comp = comps[0]
    if any(k in comp for k in ("RRULE", "RDATE", "RECURRENCE-ID", "DURATION")):
        return False
    start, end = comp.get("DTSTART"), comp.get("DTEND")
    return all(
        p is not None and isinstance(p.dt, dt.datetime) and p.dt.tzinfo is not None for p in (start, end)
    ) and utc(end.dt) >= utc(start.dt)


def utc(value: Any) -> dt.datetime:
    """A DATE or DATE-TIME as naive UTC (floating and dates read as UTC)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        out: dt.datetime = value
        return out
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    raise Invalid("a date property holds no date", "valid-calendar-data")


def _span(comp: Any) -> tuple[Any, dt.timedelta] | None:
    """(start value, duration) of one component, or None when it has no start (a task without dates)."""
    start = comp.get("DTSTART")
    if start is None:
        due = comp.get("DUE")
        return (due.dt, dt.timedelta(0)) if due is not None else None
    s = start.dt
    if comp.get("DTEND") is not None:
        return s, utc(comp["DTEND"].dt) - utc(s)
    if comp.get("DUE") is not None:
        return s, utc(comp["DUE"].dt) - utc(s)
    if comp.get("DURATION") is not None:
        return s, comp["DURATION"].dt
    is_date = isinstance(s, dt.date) and not isinstance(s, dt.datetime)
    return s, dt.timedelta(days=1) if is_date else dt.timedelta(0)


def _bounds(comps: list[Any]) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Earliest start and latest end over every instance (None end: the recurrence never ends)."""
    starts: list[dt.datetime] = []
    ends: list[dt.datetime | None] = []
    for comp in comps:
        span = _span(comp)
        if span is None:
            return None, None
        s, length = span
        first = utc(s)
        starts.append(first)
        last: dt.datetime | None = first
        rule = comp.get("RRULE")
        if rule is not None:
            rules = rule if isinstance(rule, list) else [rule]
            for r in rules:
                last = _rule_end(r, s, last)
                if last is None:
                    break
        for rd in _dates(comp.get("RDATE")):
            if last is not None:
                last = max(last, rd)
        ends.append(None if last is None else last + max(length, dt.timedelta(0)))
    end = None if any(e is None for e in ends) else max(e for e in ends if e is not None)
    return min(starts), end


def _rule_end(r: Any, start: Any, last: dt.datetime | None) -> dt.datetime | None:
    until = r.get("UNTIL")
    count = r.get("COUNT")
    if until:
        u = utc(until[0])
        return u if last is None else max(last, u)
    if count:
        n = int(count[0])
        if n > MAX_COUNT_EXPANSION:
            return None
        first = start if isinstance(start, dt.datetime) else dt.datetime(start.year, start.month, start.day)
        if first.tzinfo is not None:
            first = first.astimezone(dt.UTC).replace(tzinfo=None)
        rule_text = r.to_ical().decode()
        occurrences = list(rrule.rrulestr(rule_text, dtstart=first))
        if not occurrences:
            return last
        final: dt.datetime = occurrences[-1]
        return final if last is None else max(last, final)
    return None


def _dates(prop: Any) -> list[dt.datetime]:
    if prop is None:
        return []
    out: list[dt.datetime] = []
    for p in prop if isinstance(prop, list) else [prop]:
        for d in getattr(p, "dts", []):
            value = d.dt
            if isinstance(value, tuple):  # a PERIOD
                value = value[0]
            out.append(utc(value))
    return out


# -- vCard -------------------------------------------------------------------------------------------------


def parse_card(text: str) -> Any:
    try:
        card = vobject.readOne(text)
    except Exception as exc:  # vobject raises ParseError, ValueError, AttributeError... on bad input
        raise Invalid(f"invalid vCard data: {type(exc).__name__}", "valid-address-data") from None
    if getattr(card, "name", "").upper() != "VCARD":
        raise Invalid("the object is not a VCARD", "valid-address-data")
    return card


def derive_card(text: str) -> Derived:
    card = parse_card(text)
    version = card.contents.get("version")
    if not version or str(version[0].value).strip() not in VCARD_VERSIONS:
        raise Invalid("vCard VERSION must be 3.0 or 4.0", "supported-address-data")
    fn = card.contents.get("fn")
    if not fn or not str(fn[0].value).strip():
        raise Invalid("a vCard needs FN", "valid-address-data")
    uid_prop = card.contents.get("uid")
    uid = str(uid_prop[0].value).strip() if uid_prop else ""
    if not uid:
        raise Invalid("a vCard needs UID", "valid-address-data")
    names = [str(fn[0].value)]
    for n in card.contents.get("n", []):
        names.append(str(n.value).strip())
    for nick in card.contents.get("nickname", []):
        names.append(str(nick.value))
    emails = [str(e.value) for e in card.contents.get("email", [])]
    return Derived(
        "addressbook",
        uid,
        "VCARD",
        etag_of(text),
        summary=str(fn[0].value),
        names=" | ".join(n for n in names if n),
        emails=" | ".join(emails),
    )
