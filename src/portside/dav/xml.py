"""XML for the DAV edge: namespaces, safe bounded parsing (no DTD, no entities, no network), and the
multistatus / error documents."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from urllib.parse import quote
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from portside.errors import BadRequest

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
CS = "http://calendarserver.org/ns/"
ICAL = "http://apple.com/ns/ical/"
PREFIXES = {DAV: "D", CALDAV: "C", CARDDAV: "CR", CS: "CS", ICAL: "ICAL"}
MAX_ELEMENTS = 20_000
MAX_DEPTH = 40

for _ns, _prefix in PREFIXES.items():
    ET.register_namespace(_prefix, _ns)


def tag(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def parse(body: bytes) -> ET.Element:
    """A request document, refused (400) when it is not well-formed, declares a DTD or entities, or is
    deeper or larger than the bounds."""
    try:
        root: ET.Element = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, DefusedXmlException, ValueError) as exc:
        raise BadRequest(f"invalid XML body: {type(exc).__name__}") from None
    count = 0
    stack = [(root, 1)]
    while stack:
        el, depth = stack.pop()
        count += 1
        if count > MAX_ELEMENTS or depth > MAX_DEPTH:
            raise BadRequest("XML body too large or too deep")
        stack.extend((child, depth + 1) for child in el)
    return root


def href(path: str) -> str:
    return quote(path, safe="/@:+~!$&'()*,;=")


def element(t: str, text: str | None = None, children: Iterable[ET.Element] = ()) -> ET.Element:
    el = ET.Element(t)
    if text is not None:
        el.text = text
    el.extend(children)
    return el


def sub(parent: ET.Element, t: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, t)
    if text is not None:
        el.text = text
    return el


STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No Content",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    412: "Precondition Failed",
    424: "Failed Dependency",
    507: "Insufficient Storage",
}


def status_line(code: int) -> str:
    return f"HTTP/1.1 {code} {STATUS_TEXT.get(code, '')}".rstrip()


def response(path: str, found: list[ET.Element], missing: Iterable[str] = (), **other: list[ET.Element]) -> ET.Element:
    """One DAV:response with a 200 propstat for `found` and a 404 propstat for the `missing` property tags."""
    resp = ET.Element(tag(DAV, "response"))
    sub(resp, tag(DAV, "href"), href(path))
    groups: list[tuple[int, list[ET.Element]]] = [(200, found), (404, [ET.Element(t) for t in missing])]
    for key, elements in other.items():
        groups.append((int(key.removeprefix("s")), elements))
    for code, props in groups:
        if not props:
            continue
        ps = sub(resp, tag(DAV, "propstat"))
        prop = sub(ps, tag(DAV, "prop"))
        prop.extend(props)
        sub(ps, tag(DAV, "status"), status_line(code))
    if len(resp) == 1:  # no property at all was asked for (propname of an empty set): still a valid propstat
        ps = sub(resp, tag(DAV, "propstat"))
        sub(ps, tag(DAV, "prop"))
        sub(ps, tag(DAV, "status"), status_line(200))
    return resp


def status_response(path: str, code: int) -> ET.Element:
    resp = ET.Element(tag(DAV, "response"))
    sub(resp, tag(DAV, "href"), href(path))
    sub(resp, tag(DAV, "status"), status_line(code))
    return resp


Part = ET.Element | str  # a DAV:response as an element, or already written (object fast path, dav/fast.py)
ROOT_OPEN = "<D:multistatus " + " ".join(f'xmlns:{p}="{ns}"' for ns, p in PREFIXES.items()) + ">"


def multistatus(responses: Iterable[Part], sync_token: str | None = None) -> bytes:
    """The multistatus document: the root declares every prefix, so written parts use them as they are."""
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n', ROOT_OPEN]
    for r in responses:
        parts.append(r if isinstance(r, str) else ET.tostring(r, encoding="unicode"))
    if sync_token is not None:
        parts.append(f"<D:sync-token>{escape(sync_token)}</D:sync-token>")
    parts.append("</D:multistatus>")
    return "".join(parts).encode("utf-8")


def error_document(ns: str, name: str, text: str | None = None) -> bytes:
    root = ET.Element(tag(DAV, "error"))
    sub(root, tag(ns, name), text)
    return serialize(root)


def serialize(root: ET.Element) -> bytes:
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + data
