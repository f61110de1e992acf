"""RFC 3744 principal searches: principal-property-search and principal-search-property-set.

A caller finds only their own principal (Portside does not list its users to each other); the search
matches the display name and the email (calendar-user-address-set) case-insensitively.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from starlette.responses import Response

from portside.dav import xml
from portside.dav.context import Ctx
from portside.dav.props import Res
from portside.dav.read import MULTISTATUS, prop_response
from portside.dav.xml import CALDAV, DAV, tag

STRUCTURE = {tag(DAV, "property-search"), tag(DAV, "prop"), tag(DAV, "apply-to-principal-collection-set")}
SEARCHABLE = (tag(DAV, "displayname"), tag(CALDAV, "calendar-user-address-set"))


async def principal_property_search(ctx: Ctx, root: ET.Element) -> Response:
    user = await ctx.store.user(ctx.actor.ref or "")
    out = []
    if user is not None:
        _, ref, email, name = user
        values = {tag(DAV, "displayname"): name or email, tag(CALDAV, "calendar-user-address-set"): f"mailto:{email}"}
        ok = True
        for search in root.findall(tag(DAV, "property-search")):
            match = (search.findtext(tag(DAV, "match")) or "").casefold()
            props = search.find(tag(DAV, "prop"))
            names = [p.tag for p in props] if props is not None else []
            if not any(match in values.get(n, "").casefold() for n in names):
                ok = False
        if ok:
            prop = root.find(tag(DAV, "prop"))
            names = [p.tag for p in prop] if prop is not None else []
            # lenient: some clients (python caldav) put the wanted properties next to an empty DAV:prop
            names += [c.tag for c in root if c.tag not in STRUCTURE]
            names = names or [tag(DAV, "displayname")]
            out.append(prop_response(ctx, Res("principal", ctx.principal_url(ref), user), "prop", names))
    return Response(xml.multistatus(out), 207, media_type=MULTISTATUS)


async def principal_search_property_set(ctx: Ctx, _root: ET.Element) -> Response:
    root = ET.Element(tag(DAV, "principal-search-property-set"))
    for name in SEARCHABLE:
        sp = xml.sub(root, tag(DAV, "principal-search-property"))
        xml.sub(xml.sub(sp, tag(DAV, "prop")), name)
        xml.sub(sp, tag(DAV, "description"), "display name" if name.endswith("displayname") else "email address")
    return Response(xml.serialize(root), 200, media_type=MULTISTATUS)
