"""Feed documents: RSS 2.0, Atom 1.0 and JSON Feed 1.1, written directly from plain item data.

Every text goes through `clean` (drops what XML 1.0 cannot carry: control characters, lone surrogates,
U+FFFE/U+FFFF) and, for XML, through entity escaping, so hostile values (markup, `]]>`, control
characters, undecodable bytes) can never break the document. Nothing is wrapped in CDATA.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any

from portside.tools import jsonutil

RSS = "rss"
ATOM = "atom"
JSON = "json"
FORMATS = (RSS, ATOM, JSON)
MEDIA_TYPES = {
    RSS: "application/rss+xml; charset=utf-8",
    ATOM: "application/atom+xml; charset=utf-8",
    JSON: "application/feed+json; charset=utf-8",
}
GENERATOR = "Portside"

_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_EMAIL = re.compile(r"^[^@\s<>()\"]+@[^@\s<>()\"]+$")


def clean(value: Any) -> str:
    """Any value as text that XML 1.0 and UTF-8 can carry (invalid characters dropped)."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value).decode("utf-8", "replace")
    elif isinstance(value, str):
        text = value
    elif isinstance(value, dict | list):
        text = jsonutil.dumps_str(value)
    else:
        text = str(value)
    return _INVALID.sub("", text)


def esc(value: Any) -> str:
    """Text content: cleaned and entity-escaped (`>` too, so `]]>` cannot appear)."""
    return clean(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def attr(value: Any) -> str:
    return esc(value).replace('"', "&quot;")


def valid_email(value: str) -> bool:
    return bool(value) and len(value) <= 254 and _EMAIL.match(value) is not None


def rfc822(when: dt.datetime) -> str:
    return format_datetime(when.astimezone(dt.UTC), usegmt=True)


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Item:
    id: str  # urn:uuid:<reference_id>
    url: str
    title: str
    content: str  # HTML as stored
    published: dt.datetime | None
    updated: dt.datetime | None
    author: str = ""


@dataclass
class Channel:
    id: str  # urn:uuid:<feed reference_id>
    title: str
    description: str
    home: str
    self_url: str
    hub_url: str
    updated: dt.datetime
    author_name: str = ""
    author_email: str = ""
    first_url: str = ""
    next_url: str = ""
    prev_url: str = ""
    items: list[Item] = field(default_factory=list)


def render(fmt: str, ch: Channel) -> bytes:
    if fmt == RSS:
        return rss(ch)
    if fmt == ATOM:
        return atom(ch)
    return json_feed(ch)


def _atom_links(ch: Channel, media: str, prefix: str) -> list[str]:
    out = [f'<{prefix}link rel="self" type="{media}" href="{attr(ch.self_url)}"/>']
    out.append(f'<{prefix}link rel="hub" href="{attr(ch.hub_url)}"/>')
    # RFC 5005 paging; "prev" is the HTML synonym of "previous" some consumers look for
    for rel, url in (("first", ch.first_url), ("next", ch.next_url), ("previous", ch.prev_url), ("prev", ch.prev_url)):
        if url:
            out.append(f'<{prefix}link rel="{rel}" href="{attr(url)}"/>')
    return out


def rss(ch: Channel) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/">\n<channel>\n',
        f"<title>{esc(ch.title)}</title>\n<link>{esc(ch.home)}</link>\n",
        f"<description>{esc(ch.description or ch.title)}</description>\n",
        "\n".join(_atom_links(ch, "application/rss+xml", "atom:")),
        f"\n<lastBuildDate>{rfc822(ch.updated)}</lastBuildDate>\n<generator>{GENERATOR}</generator>\n",
    ]
    email = clean(ch.author_email)
    if valid_email(email):
        name = clean(ch.author_name)
        parts.append(f"<managingEditor>{esc(f'{email} ({name})' if name else email)}</managingEditor>\n")
    for it in ch.items:
        parts.append(f'<item>\n<title>{esc(it.title)}</title>\n<guid isPermaLink="false">{esc(it.id)}</guid>\n')
        if it.url:
            parts.append(f"<link>{esc(it.url)}</link>\n")
        if it.content:
            parts.append(f"<description>{esc(it.content)}</description>\n")
        when = it.published or it.updated
        if when is not None:
            parts.append(f"<pubDate>{rfc822(when)}</pubDate>\n")
        if it.author:
            parts.append(f"<dc:creator>{esc(it.author)}</dc:creator>\n")
        parts.append("</item>\n")
    parts.append("</channel>\n</rss>\n")
    return "".join(parts).encode()


def _atom_author(name: str, email: str) -> str:
    name, email = clean(name), clean(email)
    mail = f"<email>{esc(email)}</email>" if valid_email(email) else ""
    return f"<author><name>{esc(name or email or 'unknown')}</name>{mail}</author>\n"


def atom(ch: Channel) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">\n',
        f'<id>{esc(ch.id)}</id>\n<title type="text">{esc(ch.title)}</title>\n',
        f"<updated>{rfc3339(ch.updated)}</updated>\n",
    ]
    if ch.description:
        parts.append(f'<subtitle type="text">{esc(ch.description)}</subtitle>\n')
    parts.append(f'<link rel="alternate" type="text/html" href="{attr(ch.home)}"/>\n')
    parts.append("\n".join(_atom_links(ch, "application/atom+xml", "")))
    parts.append("\n")
    parts.append(_atom_author(ch.author_name or ch.title, ch.author_email))
    parts.append(f"<generator>{GENERATOR}</generator>\n")
    for it in ch.items:
        updated = it.updated or it.published or ch.updated
        parts.append(f'<entry>\n<id>{esc(it.id)}</id>\n<title type="text">{esc(it.title)}</title>\n')
        parts.append(f"<updated>{rfc3339(updated)}</updated>\n")
        if it.published is not None:
            parts.append(f"<published>{rfc3339(it.published)}</published>\n")
        if it.url:
            parts.append(f'<link rel="alternate" href="{attr(it.url)}"/>\n')
        if it.author:
            parts.append(_atom_author(it.author, ""))
        parts.append(f'<content type="html">{esc(it.content)}</content>\n</entry>\n')
    parts.append("</feed>\n")
    return "".join(parts).encode()


def json_feed(ch: Channel) -> bytes:
    doc: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": clean(ch.title),
        "home_page_url": clean(ch.home),
        "feed_url": clean(ch.self_url),
    }
    if ch.description:
        doc["description"] = clean(ch.description)
    if ch.next_url:
        doc["next_url"] = clean(ch.next_url)
    name, email = clean(ch.author_name), clean(ch.author_email)
    if name or valid_email(email):
        author: dict[str, str] = {"name": name or email}
        if valid_email(email):
            author["url"] = f"mailto:{email}"
        doc["authors"] = [author]
    doc["hubs"] = [{"type": "WebSub", "url": clean(ch.hub_url)}]
    items = []
    for it in ch.items:
        item: dict[str, Any] = {"id": clean(it.id), "title": clean(it.title), "content_html": clean(it.content)}
        if it.url:
            item["url"] = clean(it.url)
        if it.published is not None:
            item["date_published"] = rfc3339(it.published)
        if it.updated is not None:
            item["date_modified"] = rfc3339(it.updated)
        if it.author:
            item["authors"] = [{"name": clean(it.author)}]
        items.append(item)
    doc["items"] = items
    return jsonutil.dumps(doc)
