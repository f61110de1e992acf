"""calendar-query / addressbook-query filters (RFC 4791 §9.7, RFC 6352 §10.5), free-busy and expansion.

The edge parses a filter document into these dataclasses; `sql_prefilter` narrows the candidates in SQL
(component type, the widened time range on the indexed recurrence bounds, contact names/emails), and the
`matches_*` functions decide exactly on the parsed objects, recurrence instances and overrides included
(through `recurring_ical_events`).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Any

import icalendar
import recurring_ical_events
import sqlalchemy as sa

from portside.davstore.items import parse_calendar, parse_card, utc

WIDEN = dt.timedelta(days=1)  # floating times and dates may be up to ±14 h off UTC


@dataclass
class TimeRange:
    start: dt.datetime | None
    end: dt.datetime | None

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        return self.start or dt.datetime(1, 1, 2), self.end or dt.datetime(9999, 12, 30)


@dataclass
class TextMatch:
    text: str
    negate: bool = False
    collation: str = "i;ascii-casemap"
    match_type: str = "contains"

    def test(self, value: str) -> bool:
        a, b = value, self.text
        if self.collation != "i;octet":
            a, b = a.casefold(), b.casefold()
        hit = {
            "equals": a == b,
            "starts-with": a.startswith(b),
            "ends-with": a.endswith(b),
        }.get(self.match_type, b in a)
        return hit != self.negate


@dataclass
class ParamFilter:
    name: str
    is_not_defined: bool = False
    text: TextMatch | None = None


@dataclass
class PropFilter:
    name: str
    is_not_defined: bool = False
    time_range: TimeRange | None = None
    texts: list[TextMatch] = field(default_factory=list)
    params: list[ParamFilter] = field(default_factory=list)
    test: str = "anyof"  # CardDAV: how texts and params combine


@dataclass
class CompFilter:
    name: str
    is_not_defined: bool = False
    time_range: TimeRange | None = None
    props: list[PropFilter] = field(default_factory=list)
    comps: list[CompFilter] = field(default_factory=list)


@dataclass
class CardFilter:
    props: list[PropFilter] = field(default_factory=list)
    test: str = "anyof"


# -- SQL --------------------------------------------------------------------------------------------------


def sql_prefilter(t: sa.Table, top: CompFilter | None) -> list[Any]:
    """Conditions on the indexed columns that every match satisfies (a superset of the matches)."""
    if top is None or len(top.comps) != 1:
        return []
    f = top.comps[0]
    if f.is_not_defined:
        return [sa.or_(t.c.component.is_(None), t.c.component != f.name)]
    conds: list[Any] = [t.c.component == f.name]
    if f.time_range is not None:
        start, end = f.time_range.bounds()
        conds.append(sa.or_(t.c.dtstart.is_(None), t.c.dtstart < end + WIDEN))
        conds.append(sa.or_(t.c.dtend.is_(None), t.c.dtend >= start - WIDEN))
    return conds


def exact_clause(t: sa.Table, top: CompFilter | None) -> Any:
    """For a plain VEVENT time-range filter: the SQL condition that decides exactly for the rows whose bounds
    are exact (RFC 4791 §9.9), or None when the filter needs the parsed objects."""
    if top is None or top.props or len(top.comps) != 1:
        return None
    f = top.comps[0]
    if f.name != "VEVENT" or f.is_not_defined or f.props or f.comps or f.time_range is None:
        return None
    start, end = f.time_range.bounds()
    overlaps = sa.or_(t.c.dtend > start, sa.and_(t.c.dtend == t.c.dtstart, t.c.dtstart >= start))
    return sa.and_(t.c.dtstart < end, overlaps)


def card_prefilter(t: sa.Table, f: CardFilter) -> list[Any]:
    """Text on names and emails, when every condition is a plain 'contains' on them (anyof)."""
    columns = {
        "FN": t.c.contact_names,
        "N": t.c.contact_names,
        "NICKNAME": t.c.contact_names,
        "EMAIL": t.c.contact_emails,
    }
    if f.test != "anyof" or not f.props:
        return []
    ors = []
    for p in f.props:
        col = columns.get(p.name.upper())
        if col is None or p.is_not_defined or p.params or len(p.texts) != 1:
            return []
        m = p.texts[0]
        if m.negate or m.match_type != "contains" or m.collation == "i;octet":
            return []
        ors.append(sa.func.lower(col).contains(m.text.lower(), autoescape=True))
    return [sa.or_(*ors)]


# -- calendars --------------------------------------------------------------------------------------------


def _occurrences(cal: icalendar.Calendar, name: str, tr: TimeRange) -> list[Any]:
    start, end = tr.bounds()
    try:
        return list(recurring_ical_events.of(cal, components=[name]).between(start, end))
    except Exception:  # a recurrence the library cannot expand: fall back to the components themselves
        return [c for c in cal.walk(name)]


def _prop_values(comp: Any, name: str) -> list[Any]:
    value = comp.get(name)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _match_prop(comp: Any, f: PropFilter) -> bool:
    values = _prop_values(comp, f.name)
    if f.is_not_defined:
        return not values
    if not values:
        return False
    for v in values:
        ok = True
        if f.time_range is not None and hasattr(v, "dt"):
            start, end = f.time_range.bounds()
            ok = start <= utc(v.dt) < end
        for m in f.texts:
            ok = ok and m.test(v.to_ical().decode() if hasattr(v, "to_ical") else str(v))
        for pf in f.params:
            pv = getattr(v, "params", {}).get(pf.name)
            if pf.is_not_defined:
                ok = ok and pv is None
            else:
                ok = ok and pv is not None and (pf.text is None or pf.text.test(str(pv)))
        if ok:
            return True
    return False


def _match_comp(comp: Any, f: CompFilter) -> bool:
    """`comp` (already the component named f.name) satisfies f's properties and sub-components."""
    if not all(_match_prop(comp, p) for p in f.props):
        return False
    for cf in f.comps:
        subs = [c for c in comp.subcomponents if c.name == cf.name]
        if cf.is_not_defined:
            if subs:
                return False
            continue
        if not any(_match_comp(s, cf) for s in subs):
            return False
    return True


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> icalendar.Calendar:
    """Parsed objects for filtering (read only): recurring ones are candidates of many queries."""
    return parse_calendar(text)


def matches_calendar(text: str, top: CompFilter | None) -> bool:
    if top is None:
        return True
    cal = _parsed(text)
    if top.name != "VCALENDAR":
        return False
    if not all(_match_prop(cal, p) for p in top.props):
        return False
    for f in top.comps:
        comps = [c for c in cal.subcomponents if c.name == f.name]
        if f.is_not_defined:
            if comps:
                return False
            continue
        if f.time_range is not None:
            undated = [c for c in comps if c.get("DTSTART") is None and c.get("DUE") is None]
            comps = _occurrences(cal, f.name, f.time_range) if len(undated) < len(comps) else []
            comps = [c for c in comps if _in_range(c, f.time_range)] + undated
        if not any(_match_comp(c, f) for c in comps):
            return False
    return True


def _in_range(comp: Any, tr: TimeRange) -> bool:
    """RFC 4791 §9.9 on one instance (dates and floating times read as UTC)."""
    start, end = tr.bounds()
    s = comp.get("DTSTART")
    if s is None:
        due = comp.get("DUE")
        return due is None or start < utc(due.dt) <= end if due is not None else True
    s_utc = utc(s.dt)
    if comp.get("DTEND") is not None:
        e_utc = utc(comp["DTEND"].dt)
    elif comp.get("DUE") is not None:
        e_utc = utc(comp["DUE"].dt)
    elif comp.get("DURATION") is not None:
        e_utc = s_utc + comp["DURATION"].dt
    elif not isinstance(s.dt, dt.datetime):
        e_utc = s_utc + dt.timedelta(days=1)
    else:
        e_utc = s_utc
    if e_utc > s_utc:
        return start < e_utc and s_utc < end
    return start <= s_utc < end


def expand(text: str, tr: TimeRange) -> str:
    """The object's instances in the range as separate components with RECURRENCE-ID, in UTC (§9.6.5)."""
    cal = parse_calendar(text)
    out = icalendar.Calendar()
    for key, value in cal.property_items(recursive=False):
        if key not in ("BEGIN", "END"):
            out.add(key, value)
    recurring = any("RRULE" in c or "RDATE" in c for c in cal.subcomponents)
    for name in ("VEVENT", "VTODO", "VJOURNAL"):
        if not cal.walk(name):
            continue
        for inst in _occurrences(cal, name, tr):
            if not _in_range(inst, tr):
                continue
            for key in ("RRULE", "RDATE", "EXDATE"):
                inst.pop(key, None)
            for key in ("DTSTART", "DTEND", "RECURRENCE-ID"):
                v = inst.get(key)
                if v is not None and isinstance(v.dt, dt.datetime):
                    inst.pop(key)
                    inst.add(key, utc(v.dt).replace(tzinfo=dt.UTC))
            if recurring and "RECURRENCE-ID" not in inst and inst.get("DTSTART") is not None:
                inst.add("RECURRENCE-ID", inst["DTSTART"].dt)
            out.add_component(inst)
    text_out: str = out.to_ical().decode()
    return text_out


def busy_periods(text: str, tr: TimeRange) -> list[tuple[dt.datetime, dt.datetime, str]]:
    """(start, end, FBTYPE) of every busy instance of a VEVENT object inside the range."""
    cal = _parsed(text)
    out = []
    start, end = tr.bounds()
    for inst in _occurrences(cal, "VEVENT", tr):
        if str(inst.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
            continue
        status = str(inst.get("STATUS", "CONFIRMED")).upper()
        if status == "CANCELLED" or inst.get("DTSTART") is None or not _in_range(inst, tr):
            continue
        s = utc(inst["DTSTART"].dt)
        if inst.get("DTEND") is not None:
            e = utc(inst["DTEND"].dt)
        elif inst.get("DURATION") is not None:
            e = s + inst["DURATION"].dt
        else:
            e = s + (dt.timedelta(days=1) if not isinstance(inst["DTSTART"].dt, dt.datetime) else dt.timedelta(0))
        if e <= s:
            continue
        out.append((max(s, start), min(e, end), "BUSY-TENTATIVE" if status == "TENTATIVE" else "BUSY"))
    return out


# -- vCards -----------------------------------------------------------------------------------------------


def matches_card(text: str, f: CardFilter) -> bool:
    if not f.props:
        return True
    card = parse_card(text)
    results = []
    for p in f.props:
        values = card.contents.get(p.name.lower(), [])
        if p.is_not_defined:
            results.append(not values)
            continue
        if not values:
            results.append(False)
            continue
        hit = False
        for v in values:
            checks = [m.test(_card_text(v.value)) for m in p.texts]
            for pf in p.params:
                pv = v.params.get(pf.name.upper())
                if pf.is_not_defined:
                    checks.append(pv is None)
                else:
                    checks.append(pv is not None and (pf.text is None or any(pf.text.test(str(x)) for x in pv)))
            if not checks or (all(checks) if p.test == "allof" else any(checks)):
                hit = True
                break
        results.append(hit)
    return all(results) if f.test == "allof" else any(results)


def _card_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
