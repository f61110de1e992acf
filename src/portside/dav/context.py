"""One DAV request: the caller, the resource its path names, bounded body reading and URL building.

The tree (the same under `/caldav` and `/carddav`):
  /                                          root
  /users/                                    the principals (lists the caller only)
  /users/<ref>/                              a principal (only the user themselves, or an administrator)
  /users/<ref>/calendars/ | addressbooks/    the home sets
  /users/<ref>/calendars/<name>/             a collection (anyone the table gate and its grants let PEEK)
  /users/<ref>/calendars/<name>/<object>     an object of it
  /groups/<ref>/                             a group principal (ACL entries name it)
A path that names something the caller may not see answers 404, exactly like one that names nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

from portside.actions.services import Services
from portside.auth import access
from portside.auth.permissions import PEEK, Actor
from portside.davstore.store import Coll, DavStore
from portside.davstore.tables import COLLECTION, KIND_ADDRESSBOOK, KIND_CALENDAR, OBJECT
from portside.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge

HOMES = {"calendars": KIND_CALENDAR, "addressbooks": KIND_ADDRESSBOOK}
HOME_OF = {KIND_CALENDAR: "calendars", KIND_ADDRESSBOOK: "addressbooks"}
MAX_XML_BODY = 1024 * 1024
MAX_OBJECT_BODY = 1024 * 1024

Kind = Literal["root", "users", "principal", "home", "collection", "object", "group", "missing"]


@dataclass
class Target:
    kind: Kind
    segments: list[str]
    user: tuple[int, str, str, str] | None = None  # (id, ref, email, name)
    home: str | None = None  # "calendars" | "addressbooks"
    coll: Coll | None = None
    name: str | None = None  # the collection name (also when it does not exist yet)
    href: str | None = None  # the object name

    @property
    def coll_kind(self) -> str | None:
        return HOMES.get(self.home or "")


@dataclass
class Ctx:
    request: Request
    svc: Services
    store: DavStore
    actor: Actor
    prefix: str
    target: Target
    gates: access.CalendarGates

    def url(self, *segments: str, collection: bool = True) -> str:
        path = self.prefix + "/" + "/".join(segments)
        return path + "/" if collection and segments else path if segments else self.prefix + "/"

    def principal_url(self, ref: str | None = None) -> str:
        return self.url("users", ref or self.actor.ref or "")

    def home_url(self, kind: str, ref: str | None = None) -> str:
        prefix = "/carddav" if kind == KIND_ADDRESSBOOK else "/caldav"
        return f"{prefix}/users/{ref or self.actor.ref}/{HOME_OF[kind]}/"

    def coll_url(self, coll: Coll) -> str:
        return self.url("users", coll.owner_ref or "", HOME_OF[coll.kind], coll.name)

    def depth(self, default: str = "infinity") -> str:
        value = (self.request.headers.get("depth") or default).strip().lower()
        if value not in ("0", "1", "infinity"):
            raise BadRequest("Depth must be 0, 1 or infinity")
        return value

    async def body(self, limit: int = MAX_XML_BODY) -> bytes:
        declared = self.request.headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit() and len(declared) <= 20):
                raise BadRequest("invalid Content-Length")
            if int(declared) > limit:
                raise PayloadTooLarge(f"request body larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def require(self, right: int, coll: Coll | None = None, *, objects: bool = True) -> Coll:
        """The target's collection when the caller holds `right` on its objects (`objects=False`: on the
        collection itself), table gates included (403 otherwise)."""
        coll = coll or self.target.coll
        if coll is None:
            raise NotFound("no such collection")
        if not access.calendar_right(self.actor, self.gates, coll.grants, right, objects=objects):
            raise Forbidden("not allowed on this collection")
        return coll


async def load_gates(svc: Services) -> access.CalendarGates:
    """The `collection` and `calendar` table gates (cached by /api's gate cache, dropped on their changes)."""
    return access.CalendarGates(await svc.crud.gate_grants(COLLECTION), await svc.crud.gate_grants(OBJECT))


async def resolve(store: DavStore, actor: Actor, path: str, gates: access.CalendarGates) -> Target:
    segments = [s for s in path.split("/") if s]
    if any(s in (".", "..") or "\x00" in s for s in segments):
        raise NotFound("no such resource")
    if not segments:
        return Target("root", segments)
    if segments[0] == "groups" and len(segments) == 2:
        return Target("group", segments, name=segments[1])
    if segments[0] != "users":
        return Target("missing", segments)
    if len(segments) == 1:
        return Target("users", segments)
    if len(segments[1]) > 64:
        return Target("missing", segments)
    home = segments[2] if len(segments) > 2 else None
    if home is not None and (home not in HOMES or len(segments) > 5):
        return Target("missing", segments)
    coll = None
    if home is not None and len(segments) >= 4 and len(segments[3]) <= 200:
        coll = await store.collection_at(segments[1], HOMES[home], segments[3])
    user: tuple[int, str, str, str] | None = None
    if coll is not None and coll.owner_id is not None and coll.owner_ref is not None:
        user = (coll.owner_id, coll.owner_ref, "", "")  # no second lookup for the owner
    else:
        user = await store.user(segments[1])
    if user is None:
        return Target("missing", segments)
    own = access.owns_or_administers(actor, user[1])
    if len(segments) == 2:
        return Target("principal" if own else "missing", segments, user)
    assert home is not None
    if len(segments) == 3:
        return Target("home" if own else "missing", segments, user, home)
    name = segments[3]
    if coll is not None and not access.calendar_right(actor, gates, coll.grants, PEEK, objects=False):
        coll = None
        if not own:  # someone else's collection the caller may not see: as if it did not exist
            return Target("missing", segments, user, home, None, None)
    if len(segments) == 4:
        return Target("collection" if coll is not None else "missing", segments, user, home, coll, name)
    return Target("object", segments, user, home, coll, name, segments[4])
