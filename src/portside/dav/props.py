"""Properties of every DAV resource: which exist, their values, and which `allprop` returns."""

from __future__ import annotations

import datetime as dt
import email.utils
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from portside.auth import access
from portside.dav.context import Ctx
from portside.dav.xml import CALDAV, CARDDAV, CS, DAV, ICAL, element, href, sub, tag
from portside.davstore.hooks import MAX_OBJECT_BYTES
from portside.davstore.store import Coll, Obj
from portside.davstore.tables import KIND_ADDRESSBOOK, KIND_CALENDAR

Builder = Callable[[], ET.Element]
ALLPROP = {tag(DAV, n) for n in ("resourcetype", "displayname", "getetag", "getcontenttype", "getcontentlength")} | {
    tag(DAV, "getlastmodified"),
    tag(DAV, "creationdate"),
}
SYNC_NS = "urn:portside:sync:"
REPORTS = {
    KIND_CALENDAR: [(CALDAV, "calendar-query"), (CALDAV, "calendar-multiget"), (CALDAV, "free-busy-query")],
    KIND_ADDRESSBOOK: [(CARDDAV, "addressbook-query"), (CARDDAV, "addressbook-multiget")],
}


@dataclass
class Res:
    """One resource in a multistatus answer."""

    kind: str  # root | users | principal | home | collection | object | group
    path: str
    user: tuple[int, str, str, str] | None = None
    home: str | None = None  # calendar | addressbook (for home sets)
    coll: Coll | None = None
    obj: Obj | None = None


def sync_token(coll: Coll) -> str:
    return f"{SYNC_NS}{coll.ref}:{coll.sync_seq}"


def _el(t: str, text: str | None = None) -> Builder:
    return lambda: element(t, text)


def _hrefs(t: str, *paths: str) -> Builder:
    def build() -> ET.Element:
        el = ET.Element(t)
        for p in paths:
            sub(el, tag(DAV, "href"), href(p))
        return el

    return build


def _resourcetype(*types: tuple[str, str]) -> Builder:
    def build() -> ET.Element:
        el = ET.Element(tag(DAV, "resourcetype"))
        for ns, name in types:
            sub(el, tag(ns, name))
        return el

    return build


def _privileges(names: list[str]) -> list[ET.Element]:
    out = []
    for name in names:
        priv = ET.Element(tag(DAV, "privilege"))
        sub(priv, tag(DAV, name))
        out.append(priv)
    return out


def _reports(kind: str) -> Builder:
    def build() -> ET.Element:
        el = ET.Element(tag(DAV, "supported-report-set"))
        for ns, name in [*REPORTS[kind], (DAV, "sync-collection")]:
            sr = sub(el, tag(DAV, "supported-report"))
            sub(sub(sr, tag(DAV, "report")), tag(ns, name))
        return el

    return build


def _acl(ctx: Ctx, coll: Coll) -> Builder:
    def build() -> ET.Element:
        el = ET.Element(tag(DAV, "acl"))
        for who, ref, privileges in access.calendar_acl(coll.grants):
            ace = sub(el, tag(DAV, "ace"))
            principal = sub(ace, tag(DAV, "principal"))
            if who == "owner":
                sub(principal, tag(DAV, "href"), href(ctx.url("users", ref or "")))
            elif who == "group":
                sub(principal, tag(DAV, "href"), href(ctx.url("groups", ref or "")))
            else:
                sub(principal, tag(DAV, "all"))
            grant = sub(ace, tag(DAV, "grant"))
            grant.extend(_privileges(privileges))
            sub(ace, tag(DAV, "protected"))
        return el

    return build


def _comp_set(coll: Coll) -> Builder:
    def build() -> ET.Element:
        el = ET.Element(tag(CALDAV, "supported-calendar-component-set"))
        for name in [c for c in coll.components.split(",") if c]:
            sub(el, tag(CALDAV, "comp")).set("name", name)
        return el

    return build


def _data_types(t: str, ns: str, types: list[tuple[str, str]]) -> Builder:
    def build() -> ET.Element:
        el = ET.Element(tag(ns, t))
        for ctype, version in types:
            d = sub(el, tag(ns, "calendar-data" if ns == CALDAV else "address-data-type"))
            d.set("content-type", ctype)
            d.set("version", version)
        return el

    return build


def _dead(coll: Coll, name: str, value: str) -> Builder:
    def build() -> ET.Element:
        try:
            return ET.fromstring(value)
        except ET.ParseError:
            return element(name)

    return build


def properties(ctx: Ctx, res: Res) -> dict[str, Builder]:
    """Every property `res` has, by Clark name, with its builder."""
    out: dict[str, Builder] = {
        tag(DAV, "current-user-principal"): _hrefs(tag(DAV, "current-user-principal"), ctx.principal_url()),
        tag(DAV, "principal-collection-set"): _hrefs(tag(DAV, "principal-collection-set"), ctx.url("users")),
    }
    if res.kind in ("root", "users", "home", "group"):
        out[tag(DAV, "resourcetype")] = _resourcetype((DAV, "collection"))
    if res.kind == "group":
        out[tag(DAV, "resourcetype")] = _resourcetype((DAV, "principal"))
    if res.kind == "principal" and res.user is not None:
        _uid, ref, mail, name = res.user
        out |= {
            tag(DAV, "resourcetype"): _resourcetype((DAV, "collection"), (DAV, "principal")),
            tag(DAV, "displayname"): _el(tag(DAV, "displayname"), name or mail),
            tag(DAV, "principal-URL"): _hrefs(tag(DAV, "principal-URL"), ctx.principal_url(ref)),
            tag(CALDAV, "calendar-home-set"): _hrefs(
                tag(CALDAV, "calendar-home-set"), ctx.home_url(KIND_CALENDAR, ref)
            ),
            tag(CARDDAV, "addressbook-home-set"): _hrefs(
                tag(CARDDAV, "addressbook-home-set"), ctx.home_url(KIND_ADDRESSBOOK, ref)
            ),
            tag(CALDAV, "calendar-user-address-set"): _hrefs(
                tag(CALDAV, "calendar-user-address-set"), f"mailto:{mail}", ctx.principal_url(ref)
            ),
            tag(DAV, "owner"): _hrefs(tag(DAV, "owner"), ctx.principal_url(ref)),
        }
    if res.kind == "home" and res.user is not None:
        out[tag(DAV, "owner")] = _hrefs(tag(DAV, "owner"), ctx.principal_url(res.user[1]))
        out[tag(DAV, "current-user-privilege-set")] = lambda: element(
            tag(DAV, "current-user-privilege-set"),
            children=_privileges(["read", "read-current-user-privilege-set", "bind", "unbind"]),
        )
    if res.coll is not None and res.kind == "collection":
        out |= _collection(ctx, res.coll)
    if res.kind == "object" and res.obj is not None:
        obj = res.obj
        ctype = "text/vcard; charset=utf-8" if obj.component == "VCARD" else "text/calendar; charset=utf-8"
        if obj.component and obj.component != "VCARD":
            ctype = f"text/calendar; charset=utf-8; component={obj.component.lower()}"
        out |= {
            tag(DAV, "resourcetype"): _resourcetype(),
            tag(DAV, "getetag"): _el(tag(DAV, "getetag"), f'"{obj.etag}"'),
            tag(DAV, "getcontenttype"): _el(tag(DAV, "getcontenttype"), ctype),
            tag(DAV, "getcontentlength"): _el(tag(DAV, "getcontentlength"), str(obj.length)),
        }
        if obj.updated_at is not None:
            stamp = email.utils.format_datetime(obj.updated_at.replace(tzinfo=dt.UTC), usegmt=True)
            out[tag(DAV, "getlastmodified")] = _el(tag(DAV, "getlastmodified"), stamp)
    return out


def _collection(ctx: Ctx, coll: Coll) -> dict[str, Builder]:
    cal = coll.kind == KIND_CALENDAR
    out: dict[str, Builder] = {
        tag(DAV, "resourcetype"): _resourcetype(
            (DAV, "collection"), (CALDAV, "calendar") if cal else (CARDDAV, "addressbook")
        ),
        tag(DAV, "displayname"): _el(tag(DAV, "displayname"), coll.display_name or coll.name),
        tag(DAV, "owner"): _hrefs(tag(DAV, "owner"), ctx.principal_url(coll.owner_ref)),
        tag(DAV, "sync-token"): _el(tag(DAV, "sync-token"), sync_token(coll)),
        tag(CS, "getctag"): _el(tag(CS, "getctag"), sync_token(coll)),
        tag(DAV, "supported-report-set"): _reports(coll.kind),
        tag(DAV, "current-user-privilege-set"): lambda: element(
            tag(DAV, "current-user-privilege-set"),
            children=_privileges(access.calendar_privileges(ctx.actor, ctx.gates, coll.grants)),
        ),
        tag(DAV, "acl"): _acl(ctx, coll),
        tag(DAV, "resource-id"): _hrefs(tag(DAV, "resource-id"), f"urn:uuid:{coll.ref}"),
    }
    if cal:
        out |= {
            tag(CALDAV, "supported-calendar-component-set"): _comp_set(coll),
            tag(CALDAV, "supported-calendar-data"): _data_types(
                "supported-calendar-data", CALDAV, [("text/calendar", "2.0")]
            ),
            tag(CALDAV, "max-resource-size"): _el(tag(CALDAV, "max-resource-size"), str(MAX_OBJECT_BYTES)),
            tag(CALDAV, "calendar-description"): _el(tag(CALDAV, "calendar-description"), coll.description or ""),
        }
        if coll.color:
            out[tag(ICAL, "calendar-color")] = _el(tag(ICAL, "calendar-color"), coll.color)
        if coll.timezone:
            out[tag(CALDAV, "calendar-timezone")] = _el(tag(CALDAV, "calendar-timezone"), coll.timezone)
    else:
        out |= {
            tag(CARDDAV, "supported-address-data"): _data_types(
                "supported-address-data", CARDDAV, [("text/vcard", "3.0"), ("text/vcard", "4.0")]
            ),
            tag(CARDDAV, "max-resource-size"): _el(tag(CARDDAV, "max-resource-size"), str(MAX_OBJECT_BYTES)),
            tag(CARDDAV, "addressbook-description"): _el(
                tag(CARDDAV, "addressbook-description"), coll.description or ""
            ),
        }
    for name, value in coll.properties.items():
        out.setdefault(name, _dead(coll, name, value))
    return out


def dead_value(el: ET.Element) -> str:
    return ET.tostring(el, encoding="unicode")
