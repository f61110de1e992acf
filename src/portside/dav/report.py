"""REPORT: calendar-query, calendar-multiget, free-busy-query, addressbook-query, addressbook-multiget and
sync-collection (RFC 4791, 6352, 6578)."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import icalendar
import sqlalchemy as sa
from starlette.responses import Response

from portside.auth.permissions import READ
from portside.dav import fast, principals, xml
from portside.dav.context import Ctx
from portside.dav.props import SYNC_NS, Res, properties, sync_token
from portside.dav.read import MULTISTATUS, prop_response, target_res
from portside.dav.xml import CALDAV, CARDDAV, DAV, tag
from portside.davstore import instances, items, query
from portside.davstore.query import CardFilter, CompFilter, ParamFilter, PropFilter, TextMatch, TimeRange
from portside.davstore.store import Coll, Obj
from portside.davstore.tables import KIND_ADDRESSBOOK, KIND_CALENDAR, OBJECT
from portside.errors import BadRequest, Forbidden, NotFound

MAX_HREFS = 10_000
MAX_FILTERS = 200


class ReportError(Forbidden):
    """A 403 naming a precondition (supported-report, supported-collation...)."""

    def __init__(self, detail: str, precondition: str):
        super().__init__(detail)
        self.precondition = precondition


class InvalidSyncToken(Forbidden):
    precondition = "valid-sync-token"


async def do_REPORT(ctx: Ctx) -> Response:
    root = xml.parse(await ctx.body())
    handlers: dict[str, Callable[[Ctx, ET.Element], Awaitable[Response]]] = {
        tag(DAV, "principal-property-search"): principals.principal_property_search,
        tag(DAV, "principal-search-property-set"): principals.principal_search_property_set,
        tag(CALDAV, "calendar-query"): calendar_query,
        tag(CALDAV, "calendar-multiget"): multiget,
        tag(CARDDAV, "addressbook-query"): addressbook_query,
        tag(CARDDAV, "addressbook-multiget"): multiget,
        tag(CALDAV, "free-busy-query"): free_busy,
        tag(DAV, "sync-collection"): sync_collection,
    }
    handler = handlers.get(root.tag)
    if handler is None:
        raise ReportError("unsupported report", "supported-report")
    return await handler(ctx, root)


# -- parsing ----------------------------------------------------------------------------------------------


def _time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = icalendar.vDDDTypes.from_ical(value)  # type: ignore[no-untyped-call]
    except Exception:
        raise BadRequest("invalid time in time-range") from None
    if not isinstance(parsed, dt.datetime):
        raise BadRequest("invalid time in time-range")
    return items.utc(parsed)


def _range(el: ET.Element | None) -> TimeRange | None:
    if el is None:
        return None
    tr = TimeRange(_time(el.get("start")), _time(el.get("end")))
    if tr.start is None and tr.end is None:
        raise BadRequest("time-range needs start or end")
    if tr.start is not None and tr.end is not None and tr.end <= tr.start:
        raise BadRequest("time-range end must be after start")
    return tr


def _text(el: ET.Element, default_collation: str = "i;ascii-casemap") -> TextMatch:
    collation = el.get("collation") or default_collation
    if collation not in ("i;ascii-casemap", "i;octet", "i;unicode-casemap"):
        raise ReportError("unsupported collation", "supported-collation")
    negate = (el.get("negate-condition") or "no").lower() == "yes"
    return TextMatch(el.text or "", negate, collation, el.get("match-type") or "contains")


def _prop_filter(el: ET.Element, ns: str, budget: list[int]) -> PropFilter:
    budget[0] -= 1
    if budget[0] < 0:
        raise BadRequest("filter too large")
    name = el.get("name")
    if not name:
        raise BadRequest("prop-filter needs a name")
    pf = PropFilter(name.upper(), test=el.get("test") or "anyof")
    for child in el:
        if child.tag == tag(ns, "is-not-defined"):
            pf.is_not_defined = True
        elif child.tag == tag(ns, "time-range"):
            pf.time_range = _range(child)
        elif child.tag == tag(ns, "text-match"):
            pf.texts.append(_text(child))
        elif child.tag == tag(ns, "param-filter"):
            param = ParamFilter((child.get("name") or "").upper())
            for g in child:
                if g.tag == tag(ns, "is-not-defined"):
                    param.is_not_defined = True
                elif g.tag == tag(ns, "text-match"):
                    param.text = _text(g)
            pf.params.append(param)
    return pf


def _comp_filter(el: ET.Element, budget: list[int]) -> CompFilter:
    budget[0] -= 1
    if budget[0] < 0:
        raise BadRequest("filter too large")
    name = el.get("name")
    if not name:
        raise BadRequest("comp-filter needs a name")
    cf = CompFilter(name.upper())
    for child in el:
        if child.tag == tag(CALDAV, "is-not-defined"):
            cf.is_not_defined = True
        elif child.tag == tag(CALDAV, "time-range"):
            cf.time_range = _range(child)
        elif child.tag == tag(CALDAV, "prop-filter"):
            cf.props.append(_prop_filter(child, CALDAV, budget))
        elif child.tag == tag(CALDAV, "comp-filter"):
            cf.comps.append(_comp_filter(child, budget))
    return cf


def _props_of(root: ET.Element) -> tuple[str, list[str], ET.Element | None]:
    """(mode, property names, the calendar-data/address-data request element)."""
    for child in root:
        if child.tag == tag(DAV, "propname"):
            return "propname", [], None
        if child.tag == tag(DAV, "allprop"):
            return "allprop", [], None
        if child.tag == tag(DAV, "prop"):
            data = child.find(tag(CALDAV, "calendar-data"))
            if data is None:
                data = child.find(tag(CARDDAV, "address-data"))
            return "prop", [c.tag for c in child], data
    return "allprop", [], None


# -- answering --------------------------------------------------------------------------------------------


def _object_response(ctx: Ctx, coll: Coll, obj: Obj, mode: str, names: list[str], data: ET.Element | None) -> xml.Part:
    path = ctx.coll_url(coll) + obj.href
    data_tags = {tag(CALDAV, "calendar-data"), tag(CARDDAV, "address-data")}
    wanted = [n for n in names if n not in data_tags]
    text = obj.content
    if data is not None and text is not None:
        expand = data.find(tag(CALDAV, "expand"))
        if expand is not None and coll.kind == KIND_CALENDAR:
            tr = _range(expand)
            assert tr is not None
            text = query.expand(text, tr)
    if mode == "prop":
        written = fast.object_response(path, obj, wanted, data.tag if data is not None else None, text)
        if written is not None:
            return written
    el = prop_response(ctx, Res("object", path, coll=coll, obj=obj), mode, wanted)
    if data is not None and text is not None:
        ok = el.find("{DAV:}propstat/{DAV:}prop")
        if ok is None or el.find("{DAV:}propstat/{DAV:}status") is None:
            return el
        first_status = el.find("{DAV:}propstat/{DAV:}status")
        if first_status is not None and " 200 " not in (first_status.text or ""):
            ps = ET.Element(tag(DAV, "propstat"))
            ok = xml.sub(ps, tag(DAV, "prop"))
            xml.sub(ps, tag(DAV, "status"), xml.status_line(200))
            el.insert(1, ps)
        xml.sub(ok, data.tag, text)
    return el


def _collection(ctx: Ctx, kind: str) -> Coll:
    t = ctx.target
    if t.kind == "missing" or (t.kind == "object" and t.coll is None):
        raise NotFound("no such collection")
    if t.coll is None or t.kind not in ("collection", "object"):
        raise ReportError("this report runs on a collection", "supported-report")
    if t.coll.kind != kind:
        raise ReportError("this report does not apply to this collection", "supported-report")
    return ctx.require(READ)


async def calendar_query(ctx: Ctx, root: ET.Element) -> Response:
    coll = _collection(ctx, KIND_CALENDAR)
    mode, names, data = _props_of(root)
    fel = root.find(tag(CALDAV, "filter"))
    top = None
    if fel is not None:
        comp = fel.find(tag(CALDAV, "comp-filter"))
        top = _comp_filter(comp, [MAX_FILTERS]) if comp is not None else None
    t = ctx.store.model.table(OBJECT).sa
    where = query.sql_prefilter(t, top)
    hrefs = [ctx.target.href] if ctx.target.kind == "object" and ctx.target.href else None
    exact = query.exact_clause(t, top)
    decided: list[Obj] = []
    if exact is not None:  # plain events with absolute times: decided in SQL, never parsed
        decided = await ctx.store.objects(
            coll, hrefs=hrefs, content=True, where=sa.and_(*where, t.c.bounds_exact == sa.true(), exact)
        )
        not_exact = sa.or_(t.c.bounds_exact.is_(None), t.c.bounds_exact == sa.false())
        assert top is not None and top.comps[0].time_range is not None
        start, end = top.comps[0].time_range.bounds()
        listed = sa.and_(t.c.indexed_until.is_not(None), t.c.indexed_until >= end)
        decided += await ctx.store.objects(  # recurring events with absolute times: their instance index
            coll, hrefs=hrefs, content=True, where=sa.and_(*where, not_exact, instances.overlap_clause(t, start, end))
        )
        where = [*where, not_exact, sa.not_(listed)]
    objs = await ctx.store.objects(coll, hrefs=hrefs, content=True, where=sa_and(where))
    matched = decided + [o for o in objs if o.content is not None and query.matches_calendar(o.content, top)]
    out = [_object_response(ctx, coll, obj, mode, names, data) for obj in sorted(matched, key=lambda o: o.id)]
    return Response(xml.multistatus(out), 207, media_type=MULTISTATUS)


def sa_and(conds: list[Any]) -> Any:
    return sa.and_(*conds) if conds else None


async def addressbook_query(ctx: Ctx, root: ET.Element) -> Response:
    coll = _collection(ctx, KIND_ADDRESSBOOK)
    mode, names, data = _props_of(root)
    fel = root.find(tag(CARDDAV, "filter"))
    f = CardFilter()
    if fel is not None:
        f.test = fel.get("test") or "anyof"
        budget = [MAX_FILTERS]
        f.props = [_prop_filter(p, CARDDAV, budget) for p in fel.findall(tag(CARDDAV, "prop-filter"))]
    limit = None
    lim = root.find(f"{tag(CARDDAV, 'limit')}/{tag(CARDDAV, 'nresults')}")
    if lim is not None:
        if not (lim.text or "").strip().isdigit():
            raise BadRequest("nresults must be a number")
        limit = int((lim.text or "0").strip())
    t = ctx.store.model.table(OBJECT).sa
    objs = await ctx.store.objects(coll, content=True, where=sa_and(query.card_prefilter(t, f)))
    out: list[xml.Part] = []
    truncated = False
    for obj in objs:
        if obj.content is not None and query.matches_card(obj.content, f):
            if limit is not None and len(out) >= limit:
                truncated = True
                break
            out.append(_object_response(ctx, coll, obj, mode, names, data))
    if truncated:
        out.append(xml.status_response(ctx.coll_url(coll), 507))
    return Response(xml.multistatus(out), 207, media_type=MULTISTATUS)


async def multiget(ctx: Ctx, root: ET.Element) -> Response:
    kind = KIND_CALENDAR if root.tag == tag(CALDAV, "calendar-multiget") else KIND_ADDRESSBOOK
    coll = _collection(ctx, kind)
    mode, names, data = _props_of(root)
    base = ctx.coll_url(coll)
    alt = "/carddav" + base[len(ctx.prefix) :] if ctx.prefix == "/caldav" else "/caldav" + base[len(ctx.prefix) :]
    wanted: list[tuple[str, str | None]] = []
    for h in root.findall(tag(DAV, "href")):
        if len(wanted) >= MAX_HREFS:
            raise BadRequest("too many hrefs")
        path = unquote(urlsplit((h.text or "").strip()).path)
        name = None
        for b in (base, alt):
            if path.startswith(b) and "/" not in path[len(b) :] and path[len(b) :]:
                name = path[len(b) :]
        wanted.append((path, name))
    found = {o.href: o for o in await ctx.store.objects(coll, hrefs=[n for _, n in wanted if n], content=True)}
    out: list[xml.Part] = []
    for path, name in wanted:
        obj = found.get(name or "")
        out.append(
            _object_response(ctx, coll, obj, mode, names, data) if obj is not None else xml.status_response(path, 404)
        )
    return Response(xml.multistatus(out), 207, media_type=MULTISTATUS)


async def free_busy(ctx: Ctx, root: ET.Element) -> Response:
    coll = _collection(ctx, KIND_CALENDAR)
    tr = _range(root.find(tag(CALDAV, "time-range")))
    if tr is None:
        raise BadRequest("free-busy-query needs a time-range")
    top = CompFilter("VCALENDAR", comps=[CompFilter("VEVENT", time_range=tr)])
    t = ctx.store.model.table(OBJECT).sa
    objs = await ctx.store.objects(coll, content=True, where=sa_and(query.sql_prefilter(t, top)))
    fb = icalendar.Calendar()
    fb.add("VERSION", "2.0")
    fb.add("PRODID", "-//Portside//CalDAV//EN")
    comp = icalendar.FreeBusy()
    start, end = tr.bounds()
    comp.add("DTSTAMP", dt.datetime.now(dt.UTC))
    comp.add("DTSTART", start.replace(tzinfo=dt.UTC))
    comp.add("DTEND", end.replace(tzinfo=dt.UTC))
    periods: list[tuple[dt.datetime, dt.datetime, str]] = []
    for obj in objs:
        if obj.content is not None:
            periods += query.busy_periods(obj.content, tr)
    for s, e, fbtype in sorted(periods):
        prop = icalendar.vPeriod((s.replace(tzinfo=dt.UTC), e.replace(tzinfo=dt.UTC)))
        comp.add("FREEBUSY", prop, parameters={"FBTYPE": fbtype})
    fb.add_component(comp)
    return Response(fb.to_ical(), 200, media_type="text/calendar; charset=utf-8")


def parse_token(coll: Coll, token: str) -> int:
    if not token:
        return 0
    prefix = f"{SYNC_NS}{coll.ref}:"
    if not token.startswith(prefix) or not token[len(prefix) :].isdigit() or len(token) > 200:
        raise InvalidSyncToken("invalid sync token")
    seq = int(token[len(prefix) :])
    if seq > coll.sync_seq:
        raise InvalidSyncToken("invalid sync token")
    return seq


async def sync_collection(ctx: Ctx, root: ET.Element) -> Response:
    t = ctx.target
    if t.kind != "collection" or t.coll is None:
        raise ReportError("sync-collection runs on a collection", "supported-report")
    coll = ctx.require(READ)
    level = (root.findtext(tag(DAV, "sync-level")) or "1").strip()
    if level not in ("1",):
        raise BadRequest("only sync-level 1 is supported")
    since = parse_token(coll, (root.findtext(tag(DAV, "sync-token")) or "").strip())
    mode, names, data = _props_of(root)
    limit = None
    lim = root.find(f"{tag(DAV, 'limit')}/{tag(DAV, 'nresults')}")
    if lim is not None:
        if not (lim.text or "").strip().isdigit() or int((lim.text or "0").strip()) < 1:
            raise BadRequest("nresults must be a positive number")
        limit = int((lim.text or "0").strip())
    base = ctx.coll_url(coll)
    if since == 0:  # initial sync: every member (oldest change first), no deletions
        objs = await ctx.store.objects(coll)
        changed = sorted(((o.href, False, o.seq) for o in objs), key=lambda c: c[2])
        current = coll.sync_seq
    else:
        changed = await ctx.store.changes(coll, since)
        current = max([s for _, _, s in changed], default=since)
    truncated = False
    if limit is not None and len(changed) > limit:
        # every member changed at or before the last one sent has been sent: that is the token
        changed = changed[:limit]
        current = changed[-1][2]
        truncated = True
    live = [h for h, deleted, _ in changed if not deleted]
    found = {o.href: o for o in await ctx.store.objects(coll, hrefs=live, content=data is not None)} if live else {}
    out: list[xml.Part] = []
    for href, deleted, _ in changed:
        obj = found.get(href)
        if deleted or obj is None:
            out.append(xml.status_response(base + href, 404))
        else:
            out.append(_object_response(ctx, coll, obj, mode, names, data))
    if truncated:
        out.append(xml.status_response(base, 507))
    token_coll = Coll(**{**coll.__dict__, "sync_seq": current})
    return Response(xml.multistatus(out, sync_token(token_coll)), 207, media_type=MULTISTATUS)


__all__ = ["do_REPORT", "properties", "target_res"]
