"""Prometheus metrics: every metric Portside exports is defined here, in one registry per process.

`REGISTRY` is this module's own `CollectorRegistry` (not prometheus_client's global default): several
`Portside` apps in one process (the in-process test tier) share it, so each metric is registered once, at
import, and never clashes; counters count for the whole process, which is what a scrape of a process means.

Two kinds of metric live here:

- **Counted on the spot** (HTTP requests, protocol commands, logins, mail): a call at the call site, kept
  cheap — label children are bound once and cached (`HttpRecorder`), unknown label values fold into
  `other` so label sets stay small and never carry user data (no addresses, user names, raw paths).
- **Read at scrape time** (`Sampled`): gauges and counters that services already keep (sockets open, frames
  delivered, rooms, queue depths) are read from each running app's `Source` only when scraped, so the hot
  paths pay nothing for them. The runtime adds one source per app and removes it when the app stops.

`render()` is the text exposition; `refresh()` first runs the async probes (e.g. the outbox depth, one
database count) of every source.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# the classic text format every Prometheus reads (our names and labels need none of the 1.0.0 escaping)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# no `*_created` series next to every counter and histogram (process-wide: they double the series for nothing
# a dashboard uses; the process start time is `process_start_time_seconds`)
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
OTHER = "other"

# the library's process, platform and GC collectors, registered in our registry instead of the default one
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

# -- HTTP ------------------------------------------------------------------------------------------------

HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
    | {"PROPFIND", "PROPPATCH", "REPORT", "MKCOL", "MKCALENDAR", "MOVE", "COPY", "LOCK", "UNLOCK"}
)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_REQUESTS = Counter(
    "portside_http_requests",
    "HTTP requests answered, by method, route template and status class",
    ("method", "route", "status"),
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "portside_http_request_duration_seconds",
    "Time from request to the end of the response body, by method and route template",
    ("method", "route"),
    buckets=HTTP_BUCKETS,
    registry=REGISTRY,
)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class HttpRecorder:
    """Counts one answered request; the label children for a (method, route, status) are bound once."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status // 100)
        pair = self._children.get(key)
        if pair is None:
            pair = self._bind(*key)
        pair[0].inc()
        pair[1].observe(seconds)

    def _bind(self, method: str, route: str, klass: int) -> tuple[Counter, Histogram]:
        name = method if method in HTTP_METHODS else OTHER
        status = STATUS_CLASSES[klass - 1] if 1 <= klass <= 5 else OTHER
        pair = (HTTP_REQUESTS.labels(name, route, status), HTTP_SECONDS.labels(name, route))
        if len(self._children) < 4096:  # routes are templates: the set is small; never grows without bound
            self._children[(method, route, klass)] = pair
        return pair


HTTP = HttpRecorder()

# -- protocol ports (smtp, imap, ftp; dav is HTTP and counted there) --------------------------------------

PROTOCOLS = frozenset({"http", "site", "metrics", "smtp", "imap", "ftp", "dav"})
PORT_CONNECTIONS = Counter(
    "portside_port_connections", "Connections accepted by a protocol port", ("protocol",), registry=REGISTRY
)
PORT_OPEN = Gauge(
    "portside_port_connections_open", "Open connections of a protocol port", ("protocol",), registry=REGISTRY
)
PORT_COMMANDS = Counter(
    "portside_port_commands",
    "Protocol commands received, by command verb (unknown verbs count as 'other')",
    ("protocol", "command"),
    registry=REGISTRY,
)
PORT_BYTES_IN = Counter(
    "portside_port_received_bytes",
    "Payload bytes received where counting is cheap (SMTP message data, FTP uploads)",
    ("protocol",),
    registry=REGISTRY,
)
PORT_BYTES_OUT = Counter(
    "portside_port_sent_bytes",
    "Payload bytes sent where counting is cheap (FTP downloads)",
    ("protocol",),
    registry=REGISTRY,
)
LOGINS = Counter(
    "portside_logins",
    "Password logins by protocol and result (ok, failed); failed is the auth-failure count",
    ("protocol", "result"),
    registry=REGISTRY,
)


def _protocol(name: str) -> str:
    return name if name in PROTOCOLS else OTHER


_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once (`labels` takes a lock and builds the key on every call; the
    per-connection and per-message counters of the mail and file ports call it several times a message).
    Label values here come from bounded sets (protocol names, results, verb tables)."""
    key = (id(metric), labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return found


def connected(protocol: str) -> None:
    """A connection was accepted (pair with `disconnected`)."""
    name = _protocol(protocol)
    _child(PORT_CONNECTIONS, name).inc()
    _child(PORT_OPEN, name).inc()


def disconnected(protocol: str) -> None:
    _child(PORT_OPEN, _protocol(protocol)).dec()


def command(protocol: str, verb: str, known: Iterable[str]) -> None:
    """One command; `known` is the port's own verb table, so the label set is bounded by it."""
    PORT_COMMANDS.labels(_protocol(protocol), verb if verb in known else OTHER).inc()


def counting(protocol: str, verbs: dict[str, Callable[..., Awaitable[Any]]]) -> dict[str, Callable[..., Any]]:
    """A verb table (aiosmtpd's `_smtp_methods`) whose methods count each call; the table bounds the labels.
    Built per connection: the labelled children are looked up once per verb (`labels` takes a lock)."""
    name = _protocol(protocol)
    out: dict[str, Callable[..., Any]] = {}
    for verb, method in verbs.items():
        out[verb] = _counted(_child(PORT_COMMANDS, name, verb), method)
    return out


def _counted(child: Counter, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        child.inc()
        return await method(*args, **kwargs)

    return call


def received(protocol: str, size: int) -> None:
    _child(PORT_BYTES_IN, _protocol(protocol)).inc(max(size, 0))


def sent(protocol: str, size: int) -> None:
    _child(PORT_BYTES_OUT, _protocol(protocol)).inc(max(size, 0))


def login(protocol: str, ok: bool) -> None:
    LOGINS.labels(_protocol(protocol), "ok" if ok else "failed").inc()


# -- mail ------------------------------------------------------------------------------------------------

MAIL_RECEIVED = Counter(
    "portside_mail_messages_received",
    "Messages offered over SMTP DATA, by result (accepted, rejected)",
    ("result",),
    registry=REGISTRY,
)
MAIL_DELIVERIES = Counter(
    "portside_mail_deliveries",
    "Outbound delivery attempts settled by the courier, by result (sent, retried, failed)",
    ("result",),
    registry=REGISTRY,
)


def mail_received(size: int, *, accepted: bool) -> None:
    """One message offered over SMTP DATA (`size` bytes of message data)."""
    _child(MAIL_RECEIVED, "accepted" if accepted else "rejected").inc()
    received("smtp", size)


def mail_deliveries(*, sent: int, retried: int, failed: int) -> None:
    for result, n in (("sent", sent), ("retried", retried), ("failed", failed)):
        if n:
            MAIL_DELIVERIES.labels(result).inc(n)


# -- database --------------------------------------------------------------------------------------------

WRITE_BATCH = Histogram(
    "portside_db_write_batch_size",
    "Items committed per group-commit batch, by queue",
    ("queue",),
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
    registry=REGISTRY,
)


def write_batch(queue: str, size: int) -> None:
    WRITE_BATCH.labels(queue).observe(size)


# -- read at scrape time ---------------------------------------------------------------------------------

# name -> (type, help, label names); a source yields (name, label values, value) for these names only
SAMPLED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "portside_live_sockets_open": ("gauge", "Open /live WebSocket sessions", ()),
    "portside_live_subscriptions": ("gauge", "Topic subscriptions of the open /live sessions", ()),
    "portside_live_events_dispatched": ("counter", "Events fanned out to at least one /live session", ()),
    "portside_live_frames_delivered": ("counter", "Event frames handed to /live sockets", ()),
    "portside_live_sessions_dropped": ("counter", "/live sessions closed because their send queue was full", ()),
    "portside_live_dispatch_cpu_seconds": ("counter", "CPU time spent deciding and writing /live fan-out", ()),
    "portside_bus_queue_depth": ("gauge", "Events waiting in this node's bus subscriptions (fan-out backlog)", ()),
    "portside_bus_overflows": ("counter", "Bus subscriptions that fell behind and had to catch up from the log", ()),
    "portside_yjs_rooms_open": ("gauge", "Yjs rooms loaded in memory", ()),
    "portside_yjs_clients": ("gauge", "Yjs peers connected to the loaded rooms", ()),
    "portside_yjs_updates_applied": ("counter", "Yjs document updates applied from peers", ()),
    "portside_yjs_write_queue_depth": ("gauge", "Yjs updates waiting for the group-commit writer", ()),
    "portside_yjs_write_batches": ("counter", "Group commits done by the Yjs update writer", ()),
    "portside_sessions_open": ("gauge", "Signed-in long-lived sessions, by kind", ("kind",)),
    "portside_mail_outbox_waiting": ("gauge", "Outbound messages queued and not yet sent or failed", ()),
}
Sample = tuple[str, tuple[str, ...], float]
PROBE_INTERVAL = 5.0  # seconds: scrapes closer together than this reuse the last probe (a database count)


@dataclass(eq=False)
class Source:
    """One app's scrape-time readings: `read()` yields samples; `probe` (async) refreshes `probed` first."""

    read: Callable[[], Iterable[Sample]]
    probe: Callable[[], Awaitable[list[Sample]]] | None = None
    probed: list[Sample] = field(default_factory=list)
    probed_at: float = -PROBE_INTERVAL


class Sampled(Collector):
    """Sums the samples of every registered source (one per running app) at scrape time."""

    def __init__(self) -> None:
        self.sources: list[Source] = []

    def add(self, source: Source) -> Callable[[], None]:
        self.sources.append(source)

        def remove() -> None:
            if source in self.sources:
                self.sources.remove(source)

        return remove

    def describe(self) -> Iterator[Metric]:
        return iter(())  # names are known only at collect time; none clashes with the counted metrics

    def collect(self) -> Iterator[Metric]:
        totals: dict[str, dict[tuple[str, ...], float]] = {name: {} for name in SAMPLED}
        for source in list(self.sources):
            for name, labels, value in [*source.read(), *source.probed]:
                values = totals.get(name)
                if values is not None:
                    values[labels] = values.get(labels, 0.0) + value
        for name, (kind, doc, label_names) in SAMPLED.items():
            family: GaugeMetricFamily | CounterMetricFamily
            if kind == "counter":
                family = CounterMetricFamily(name.removesuffix("_total"), doc, labels=label_names)
            else:
                family = GaugeMetricFamily(name, doc, labels=label_names)
            values = totals[name]
            if not values and not label_names:
                values = {(): 0.0}
            for labels, value in sorted(values.items()):
                family.add_metric(list(labels), value)
            yield family


SAMPLED_COLLECTOR = Sampled()
REGISTRY.register(SAMPLED_COLLECTOR)


async def refresh() -> None:
    """Run every source's async probe (each failure leaves that source's last readings in place); a source
    probed less than PROBE_INTERVAL ago keeps its readings, so a scraper in a loop costs one count per 5 s."""
    now = time.monotonic()
    for source in list(SAMPLED_COLLECTOR.sources):
        if source.probe is not None and now - source.probed_at >= PROBE_INTERVAL:
            source.probed_at = now
            try:
                source.probed = await source.probe()
            except Exception:
                continue


def render() -> bytes:
    """The Prometheus text exposition of the whole registry."""
    return generate_latest(REGISTRY)
