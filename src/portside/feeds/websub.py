"""The built-in WebSub hub (W3C WebSub) for Portside's own feeds.

`POST /websub` (form-encoded `hub.mode`, `hub.topic`, `hub.callback`, `hub.lease_seconds`, `hub.secret`)
is checked at once (topic is one of our feeds the caller may read, callback passes the allow-list) and
answered 202; the intent is then verified with a GET carrying `hub.challenge` to the callback, and only an
exact echo stores (or removes) the subscription in `websub_sub`, so it survives restarts.

A committed write on this node wakes the delivery worker; every subscription whose feed depends on a
touched table gets page 1 rendered as its subscriber (guest, or the user whose token made the request)
and, when that content changed since the last delivery, a POST with the document, `Link` headers and
`X-Hub-Signature: sha256=<hmac>` when a secret was given; failures are retried with backoff.

Callbacks are refused when any address they resolve to is not global (private, loopback, link-local,
reserved, ...) unless config `websub.allowed_callbacks` (comma-separated networks or host names) lists
it. Requests go to the address that was checked (no second DNS lookup) and never follow redirects.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import secrets
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import sqlalchemy as sa

from portside import log
from portside.actions.services import Services
from portside.auth.identity import actor_for_user
from portside.auth.permissions import GUEST, Actor
from portside.core import limits, records
from portside.core.events import Event
from portside.errors import BadRequest, PortsideError
from portside.feeds.render import FORMATS
from portside.feeds.service import FeedService
from portside.tools import crypto

logger = log.get("websub")
TABLE = "websub_sub"
DEFAULT_LEASE = 10 * 24 * 3600
MIN_LEASE, MAX_LEASE = 60, 365 * 24 * 3600
MAX_URL = 1000
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits between delivery attempts (6 attempts in all)
TIMEOUT = 10.0
SWEEP_SECONDS = 60.0


@dataclass
class Subscription:
    id: int
    ref: str
    callback: str
    topic: str
    feed_name: str
    fmt: str
    secret: str
    expires_at: dt.datetime | None
    subscriber: str | None
    subscriber_auth: int | None = None  # the subscriber's auth_version when subscribing

    @property
    def base(self) -> str:
        p = urlsplit(self.topic)
        return f"{p.scheme}://{p.netloc}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def parse_topic(topic: str) -> tuple[str, str]:
    """`https://host/feed/blog.atom` → ("blog", "atom"), or 400."""
    p = urlsplit(topic)
    prefix = "/feed/"
    if p.scheme not in ("http", "https") or not p.netloc or not p.path.startswith(prefix) or p.query or p.fragment:
        raise BadRequest("hub.topic must be a feed URL of this server (…/feed/{name}.{rss|atom|json})")
    name, dot, ext = p.path[len(prefix) :].rpartition(".")
    if not dot or not name or "/" in name or ext.lower() not in FORMATS:
        raise BadRequest("hub.topic must be a feed URL of this server (…/feed/{name}.{rss|atom|json})")
    return name, ext.lower()


class WebSubHub:
    def __init__(self, svc: Services, feeds: FeedService):
        self.svc = svc
        self.feeds = feeds
        self.subs: dict[str, Subscription] = {}
        self.last_etag: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._reload = True
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._delivering: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._worker: asyncio.Task[None] | None = None
        self.client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, trust_env=False)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._load()
        self._worker = asyncio.create_task(self._run(), name="portside-websub")

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._delivering.values()]
        if self._worker is not None:
            tasks.append(self._worker)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.client.aclose()

    def on_events(self, events: list[Event], *, local: bool) -> None:
        """Change events: this node's writes trigger deliveries; any node's subscription edits reload."""
        tables = {e.table for e in events}
        if TABLE in tables:
            self._reload = True
            self._wake.set()
        if local and tables - {TABLE}:
            self._dirty |= tables - {TABLE}
            self._wake.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- subscription requests --------------------------------------------------------------------

    async def request(self, actor: Actor, body: str, base: str) -> str:
        form = parse_qs(body, keep_blank_values=True, max_num_fields=20)

        def one(key: str) -> str:
            values = form.get(key) or [""]
            return values[-1].strip()

        mode = one("hub.mode")
        if mode not in ("subscribe", "unsubscribe"):
            raise BadRequest("hub.mode must be subscribe or unsubscribe")
        callback, topic = one("hub.callback"), one("hub.topic")
        if not callback or len(callback) > MAX_URL or urlsplit(callback).scheme not in ("http", "https"):
            raise BadRequest("hub.callback must be an http(s) URL of at most 1000 characters")
        if not topic or len(topic) > MAX_URL:
            raise BadRequest("hub.topic is required")
        name, fmt = parse_topic(topic)
        lease = DEFAULT_LEASE
        if one("hub.lease_seconds"):
            seconds = limits.whole_number(one("hub.lease_seconds"), "hub.lease_seconds", 0, limits.INT32_MAX)
            lease = min(max(seconds, MIN_LEASE), MAX_LEASE)
        secret = one("hub.secret")
        if len(secret.encode()) >= 200:
            raise BadRequest("hub.secret must be shorter than 200 bytes")
        await self.resolve_callback(callback)  # 400 when the allow-list refuses it
        if mode == "subscribe":
            # the subscriber must be able to read the feed now (404/403/401 otherwise)
            await self.feeds.page(actor, name, fmt, 1, self.feeds.base_url(base))
        self._spawn(self._verify(mode, callback, topic, name, fmt, lease, secret, actor))
        return f"{mode} request accepted; verifying intent with the callback\n"

    async def resolve_callback(self, url: str) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The URL to connect to (host replaced by the checked address), Host header and TLS name."""
        p = urlsplit(url)
        host = p.hostname
        if p.scheme not in ("http", "https") or not host or p.username or p.password:
            raise BadRequest("hub.callback must be an http(s) URL without credentials")
        try:
            port = p.port or (443 if p.scheme == "https" else 80)
        except ValueError:
            raise BadRequest("hub.callback has an invalid port") from None
        allowed = [a.strip() for a in (self.svc.config.get("websub.allowed_callbacks") or "").split(",") if a.strip()]
        nets = []
        for entry in allowed:
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.ip_network(entry, strict=False))
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise BadRequest("hub.callback host does not resolve") from None
        addresses = []
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
            check = mapped or ip
            listed = host.lower() in allowed or any(check in n for n in nets if n.version == check.version)
            if not listed and (not check.is_global or check.is_multicast):
                raise BadRequest(
                    "hub.callback resolves to an address the hub may not call (see websub.allowed_callbacks)"
                )
            addresses.append(ip)
        if not addresses:
            raise BadRequest("hub.callback host does not resolve")
        ip = addresses[0]
        netloc = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
        target = urlunsplit((p.scheme, netloc, p.path or "/", p.query, ""))
        extensions: dict[str, Any] = {"sni_hostname": host} if p.scheme == "https" else {}
        return target, {"Host": p.netloc.rpartition("@")[2]}, extensions

    async def _verify(
        self, mode: str, callback: str, topic: str, name: str, fmt: str, lease: int, secret: str, actor: Actor
    ) -> None:
        challenge = secrets.token_urlsafe(32)
        query = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": challenge}
        if mode == "subscribe":
            query["hub.lease_seconds"] = str(lease)
        try:
            url, headers, ext = await self.resolve_callback(callback)
            sep = "&" if urlsplit(url).query else "?"
            resp = await self.client.get(url + sep + urlencode(query), headers=headers, extensions=ext)
            ok = 200 <= resp.status_code < 300 and resp.text.strip() == challenge
        except (httpx.HTTPError, PortsideError) as exc:
            logger.info("websub %s verification of %s failed: %s", mode, callback, exc)
            return
        if not ok:
            logger.info("websub %s refused by %s (status %s or wrong challenge)", mode, callback, resp.status_code)
            return
        try:
            await self._store(mode, callback, topic, name, fmt, lease, secret, actor)
        except Exception:
            logger.exception("websub: storing the %s of %s failed", mode, callback)

    async def _store(
        self, mode: str, callback: str, topic: str, name: str, fmt: str, lease: int, secret: str, actor: Actor
    ) -> None:
        model = self.svc.model
        tm = model.table(TABLE)
        t = tm.sa
        key = self.svc.config.get("encryption.secret") or ""
        async with self.svc.db.transaction() as uow:
            rows = await records.fetch(uow.conn, model, tm, sa.and_(t.c.callback == callback, t.c.topic == topic))
            if mode == "unsubscribe":
                for row in rows:
                    await records.delete(uow, model, tm, row, actor=actor.ref)
                return
            values = {
                "callback": callback,
                "topic": topic,
                "feed_name": name,
                "feed_format": fmt,
                "secret": crypto.encrypt(key, secret) if secret else None,
                "lease_seconds": lease,
                "expires_at": _now() + dt.timedelta(seconds=lease),
                "state": "active",
                "subscriber": actor.ref,
                "subscriber_auth": actor.auth_version if actor.ref is not None else None,
            }
            if rows:
                row = await records.update(uow, model, tm, rows[0].id, values, actor=actor.ref)
            else:
                row = await records.insert(uow, model, tm, values, permission=0, actor=actor.ref)
        # what the subscriber can fetch now is the baseline: only a change from it is delivered
        with contextlib.suppress(PortsideError):
            r = await self.feeds.page(actor, name, fmt, 1, f"{urlsplit(topic).scheme}://{urlsplit(topic).netloc}")
            self.last_etag[row.ref] = r.etag

    async def _load(self) -> None:
        model = self.svc.model
        if TABLE not in model.tables:
            return
        t = model.table(TABLE).sa
        key = self.svc.config.get("encryption.secret") or ""
        async with self.svc.db.read() as conn:
            rows = (await conn.execute(sa.select(t).where(t.c.state == "active"))).all()
        subs: dict[str, Subscription] = {}
        for r in rows:
            try:
                secret = crypto.decrypt(key, r.secret) if r.secret else ""
            except Exception:
                logger.warning("websub subscription %s: secret cannot be decrypted; skipped", r.reference_id)
                continue
            subs[r.reference_id] = Subscription(
                int(r.id),
                r.reference_id,
                r.callback,
                r.topic,
                r.feed_name,
                r.feed_format,
                secret,
                r.expires_at,
                r.subscriber,
                r.subscriber_auth,
            )
        self.subs = subs

    # -- delivery -----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SWEEP_SECONDS)
            self._wake.clear()
            try:
                if self._reload:
                    self._reload = False
                    await self._load()
                await self._expire()
                tables, self._dirty = self._dirty, set()
                if tables:
                    await self._match(tables)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("websub worker step failed")

    async def _expire(self) -> None:
        now = _now()
        gone = [s for s in self.subs.values() if s.expires_at is not None and s.expires_at <= now]
        for s in gone:
            await self._remove(s, "lease expired")

    async def _remove(self, sub: Subscription, why: str) -> None:
        self.subs.pop(sub.ref, None)
        model = self.svc.model
        tm = model.table(TABLE)
        async with self.svc.db.transaction() as uow:
            row = await records.fetch_one(uow.conn, model, tm, ref=sub.ref)
            if row is not None:
                await records.delete(uow, model, tm, row, actor=None)
        logger.info("websub subscription of %s to %s removed: %s", sub.callback, sub.topic, why)

    async def _match(self, tables: set[str]) -> None:
        for sub in list(self.subs.values()):
            fd = await self.feeds.definition(sub.feed_name)
            if fd is None or fd.table is None or fd.table not in self.svc.model.tables:
                continue
            if tables & set(self.feeds.dependencies(self.svc.model.table(fd.table))):
                self._deliver_soon(sub)

    def _deliver_soon(self, sub: Subscription) -> None:
        running = self._delivering.get(sub.ref)
        if running is not None and not running.done():
            self._again.add(sub.ref)  # the running delivery renders once more when it is done
            return
        task = asyncio.create_task(self._deliver(sub), name=f"websub-{sub.ref}")
        self._delivering[sub.ref] = task
        ref = sub.ref

        def done(_t: asyncio.Task[None]) -> None:
            if self._delivering.get(ref) is task:
                self._delivering.pop(ref, None)

        task.add_done_callback(done)

    async def _subscriber(self, sub: Subscription) -> Actor | None:
        """Whom deliveries render for; None once that user is gone or changed their password (a token given
        to a feed reader must not outlive the credentials it came from, as with /live sockets)."""
        if sub.subscriber is None:
            return GUEST
        who = self.svc.actors.get(sub.subscriber)
        if who is None:
            async with self.svc.db.read() as conn:
                who = await actor_for_user(conn, self.svc.model, ref=sub.subscriber)
        if who is None or (sub.subscriber_auth is not None and who.auth_version != sub.subscriber_auth):
            return None
        return who

    async def _deliver(self, sub: Subscription) -> None:
        while True:
            self._again.discard(sub.ref)
            await self._deliver_once(sub)
            if sub.ref not in self._again or sub.ref not in self.subs:
                return

    async def _deliver_once(self, sub: Subscription) -> None:
        for attempt in range(len(BACKOFF) + 1):
            who = await self._subscriber(sub)
            if who is None:
                await self._remove(sub, "subscriber no longer exists or changed credentials")
                return
            try:
                r = await self.feeds.page(who, sub.feed_name, sub.fmt, 1, sub.base)
            except PortsideError as exc:
                logger.info("websub: %s is not readable for its subscriber (%s); nothing delivered", sub.topic, exc)
                return
            if self.last_etag.get(sub.ref) == r.etag:
                return  # the subscriber already has exactly this content
            headers = {
                "Content-Type": r.media_type,
                "Link": f'<{sub.base}/websub>; rel="hub", <{sub.topic}>; rel="self"',
            }
            if sub.secret:
                digest = hmac.new(sub.secret.encode(), r.body, hashlib.sha256).hexdigest()
                headers["X-Hub-Signature"] = f"sha256={digest}"
            try:
                url, host, ext = await self.resolve_callback(sub.callback)
                resp = await self.client.post(url, content=r.body, headers={**headers, **host}, extensions=ext)
                status = resp.status_code
            except (httpx.HTTPError, PortsideError) as exc:
                status, error = 0, str(exc)
            else:
                error = f"status {status}"
            if 200 <= status < 300:
                self.last_etag[sub.ref] = r.etag
                return
            if status == 410:
                await self._remove(sub, "callback answered 410 Gone")
                return
            if attempt < len(BACKOFF):
                logger.info("websub delivery to %s failed (%s); retrying", sub.callback, error)
                await asyncio.sleep(BACKOFF[attempt])
        logger.warning("websub delivery to %s failed %d times; giving up on this change", sub.callback, attempt + 1)
