"""The object fast path: a DAV:response for one calendar object or vCard written as text when only the usual
properties are asked for (what sync clients ask for thousands of objects at a time); anything else goes
through the element builders in dav/props.py. The text uses the prefixes the multistatus root declares."""

from __future__ import annotations

import datetime as dt
import email.utils
from xml.sax.saxutils import escape

from portside.dav.xml import CALDAV, CARDDAV, DAV, href, tag
from portside.davstore.store import Obj

GETETAG = tag(DAV, "getetag")
CONTENTTYPE = tag(DAV, "getcontenttype")
LENGTH = tag(DAV, "getcontentlength")
MODIFIED = tag(DAV, "getlastmodified")
RESOURCETYPE = tag(DAV, "resourcetype")
CAL_DATA = tag(CALDAV, "calendar-data")
CARD_DATA = tag(CARDDAV, "address-data")
SIMPLE = frozenset({GETETAG, CONTENTTYPE, LENGTH, MODIFIED, RESOURCETYPE})
OK = "<D:status>HTTP/1.1 200 OK</D:status>"


def content_type(obj: Obj) -> str:
    if obj.component == "VCARD":
        return "text/vcard; charset=utf-8"
    if obj.component:
        return f"text/calendar; charset=utf-8; component={obj.component.lower()}"
    return "text/calendar; charset=utf-8"


def object_response(path: str, obj: Obj, names: list[str], data_tag: str | None, text: str | None) -> str | None:
    """The response as text, or None when a requested property needs the general builders."""
    if any(n not in SIMPLE for n in names):
        return None
    parts = ["<D:response><D:href>", escape(href(path)), "</D:href><D:propstat><D:prop>"]
    for n in names:
        if n == GETETAG:
            parts.append(f'<D:getetag>"{escape(obj.etag)}"</D:getetag>')
        elif n == CONTENTTYPE:
            parts.append(f"<D:getcontenttype>{content_type(obj)}</D:getcontenttype>")
        elif n == LENGTH:
            parts.append(f"<D:getcontentlength>{obj.length}</D:getcontentlength>")
        elif n == RESOURCETYPE:
            parts.append("<D:resourcetype/>")
        elif n == MODIFIED:
            if obj.updated_at is None:
                return None
            stamp = email.utils.format_datetime(obj.updated_at.replace(tzinfo=dt.UTC), usegmt=True)
            parts.append(f"<D:getlastmodified>{stamp}</D:getlastmodified>")
    if data_tag is not None and text is not None:
        prefix = "C:calendar-data" if data_tag == CAL_DATA else "CR:address-data"
        parts.append(f"<{prefix}>{escape(text)}</{prefix}>")
    parts.append("</D:prop>" + OK + "</D:propstat></D:response>")
    return "".join(parts)
