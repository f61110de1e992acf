"""GET /metrics over a real server: Prometheus text parsed with prometheus_client's own parser; counters move
after real traffic (HTTP, a /live delivery over websockets, an SMTP message over smtplib, IMAP and FTP logins
over imaplib and ftplib); administrators only on the HTTP port; the separate unauthenticated listener of
config `metrics.listen_interface` (live, listed in /_ports); no secrets, emails or raw paths in labels."""

from __future__ import annotations

import asyncio
import base64
import ftplib
import imaplib
import json
import re
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from imap_support import tls_context
from mailsupport import LocalDNS, add_account, add_server, start_dns, user_ref, wait_listener
from support import PASSWORD, World, create, fresh_database, me, setup_world, start_server
from yclient import YClient

ALICE = "alice@example.com"
ALICE_PW = "alice-mail-secret-1"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Env:
    world: World
    dns: LocalDNS
    emails: dict[str, str]
    smtp_port: int

    def port(self, name: str) -> int:
        port = urlsplit(self.world.server.listeners[name]).port
        assert port is not None
        return port


def set_key(w: World, key: str, value: str) -> None:
    with w.c(w.admin) as c:
        r = c.post(f"/_config/backend/{key}", content=value)
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    url, drop = fresh_database("sqlite")
    server = start_server(url)
    dns = start_dns()
    try:
        world = setup_world(server, url, None, ("mail.dns_resolver", dns.setting), ("mail.smtp_timeout", "3"))
        dns.zone.add("ext.org", "TXT", "v=spf1 ip4:127.0.0.1 -all")
        emails = {}
        for who in ("admin", "owner", "member"):
            with world.c(getattr(world, who)) as c:
                emails[who] = str(me(c)["attributes"]["email"])
        with world.c(world.admin) as c:
            ref = add_server(c, "example.com", authentication_required=False, always_on_tls=False)
            add_account(c, ref, ALICE, ALICE_PW, user_ref(server, world.owner))
        smtp_port = wait_listener(server, "smtp-example.com")
        mark = len(server.log)
        for key, value in (("imap.listen_interface", "127.0.0.1:0"), ("imap.enabled", "true")):
            set_key(world, key, value)
        for key, value in (("ftp.listen_interface", "127.0.0.1:0"), ("ftp.passive_ports", ""), ("ftp.enable", "true")):
            set_key(world, key, value)
        server.wait_listening("imap", mark)
        server.wait_listening("ftp", mark)
        yield Env(world, dns, emails, smtp_port)
    finally:
        server.stop()
        dns.stop()
        drop()


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(env: Env, token: str | None = None) -> Samples:
    with env.world.c(token or env.world.admin) as c:
        r = c.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    return parse(r.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(env: Env, check: Any, timeout: float = 10) -> Samples:
    """Scrape until `check(samples)` holds (values read at scrape time settle right after the traffic)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(env)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def basic(email: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()}


# -- who may read -----------------------------------------------------------------------------------------


def test_metrics_are_for_administrators(env: Env) -> None:
    w = env.world
    with httpx.Client(base_url=w.server.url, timeout=30) as c:
        r = c.get("/metrics")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic"), r.headers
        assert r.json()["errors"][0]["status"] == "401" and "portside_" not in r.text
        assert c.get("/metrics", headers={"Authorization": "Bearer garbage"}).status_code == 401
        assert c.get("/metrics", params={"token": w.admin}).status_code == 401  # never a token in the URL
        assert c.get("/metrics", headers=basic(env.emails["admin"], "wrong-password")).status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Basic !!!"}).status_code == 401
        r = c.get("/metrics", headers=basic(env.emails["member"], PASSWORD))
        assert r.status_code == 403 and "portside_" not in r.text, r.text
        r = c.get("/metrics", headers=basic(env.emails["admin"], PASSWORD))
        assert r.status_code == 200 and "portside_http_requests_total" in r.text
        assert c.post("/metrics", headers=basic(env.emails["admin"], PASSWORD)).status_code == 405
    for token in (w.member, w.owner, w.stranger):
        with w.c(token) as c:
            r = c.get("/metrics")
            assert r.status_code == 403 and r.json()["errors"][0]["status"] == "403", r.text
    samples = scrape(env)
    assert value(samples, "portside_logins_total", protocol="metrics", result="failed") >= 1
    assert value(samples, "portside_logins_total", protocol="metrics", result="ok") >= 1
    assert value(samples, "process_cpu_seconds_total") > 0  # the library's process collector


# -- counters move after real traffic ---------------------------------------------------------------------


def test_http_requests_counted_by_route_template(env: Env) -> None:
    w = env.world
    with w.c(w.admin) as c:
        ref = create(c, "usergroup", name="metrics-http").json()["data"]["id"]
        before = scrape(env)
        for _ in range(3):
            assert c.get(f"/api/usergroup/{ref}").status_code == 200
        assert c.get("/api/usergroup/no-such-row").status_code == 404
        assert c.get("/no/such/path/at-all").status_code == 404
    after = scrape(env)
    route = {"method": "GET", "route": "/api/{table}/{ref}"}
    ok = "portside_http_requests_total"
    assert value(after, ok, **route, status="2xx") - value(before, ok, **route, status="2xx") == 3
    assert value(after, ok, **route, status="4xx") - value(before, ok, **route, status="4xx") == 1
    unmatched = {"method": "GET", "route": "other", "status": "4xx"}
    assert value(after, ok, **unmatched) - value(before, ok, **unmatched) == 1
    hist = "portside_http_request_duration_seconds_count"
    assert value(after, hist, **route) - value(before, hist, **route) == 4
    inf = value(after, "portside_http_request_duration_seconds_bucket", **route, le="+Inf")
    assert inf == value(after, hist, **route)
    routes = {dict(labels).get("route") for (name, labels) in after if name == ok}
    assert ref not in "".join(r or "" for r in routes) and "/no/such/path/at-all" not in routes


def test_dav_requests_counted_under_their_prefix(env: Env) -> None:
    w = env.world
    set_key(w, "caldav.enable", "true")
    before = scrape(env)
    with w.c(w.admin) as c:
        r = c.request("PROPFIND", "/caldav/", headers={"Depth": "0"})
        assert r.status_code == 207, r.text
    after = scrape(env)
    labels = {"method": "PROPFIND", "route": "/caldav/*", "status": "2xx"}
    name = "portside_http_requests_total"
    assert value(after, name, **labels) - value(before, name, **labels) == 1


def test_live_delivery_is_counted(env: Env) -> None:
    w = env.world
    base = w.server.url.replace("http://", "ws://")
    before = scrape(env)
    with connect(f"{base}/live?token={w.admin}&encoding=json", open_timeout=10) as ws:
        assert json.loads(ws.recv(10))["type"] == "session"
        ws.send(json.dumps({"id": "s1", "method": "subscribe", "attributes": {"topicName": "usergroup"}}))
        assert json.loads(ws.recv(10))["ok"] is True
        open_now = scrape(env)
        assert value(open_now, "portside_live_sockets_open") >= 1
        assert value(open_now, "portside_live_subscriptions") >= 1
        with w.c(w.admin) as c:
            assert create(c, "usergroup", name="metrics-live").status_code == 201
        event = json.loads(ws.recv(10))
        assert (event["type"], event["topic"]) == ("event", "usergroup")
    after = scrape(env)
    name = "portside_live_frames_delivered_total"
    assert value(after, name) - value(before, name) >= 1
    dispatched = "portside_live_events_dispatched_total"
    assert value(after, dispatched) > value(before, dispatched)
    assert ("portside_bus_queue_depth", ()) in after and ("portside_live_sessions_dropped_total", ()) in after
    sockets = "portside_live_sockets_open"
    gone = wait_for(env, lambda s: value(s, sockets) == value(before, sockets))
    assert value(gone, sockets) == value(before, sockets)


def test_yjs_rooms_and_updates_are_counted(env: Env) -> None:
    w = env.world
    url = w.server.url.replace("http://", "ws://") + f"/yjs/metrics-room?token={w.admin}"
    before = scrape(env)

    async def edit() -> Samples:
        client = await YClient.connect(url)
        try:
            await client.edit(0, insert="counted")
            deadline = time.monotonic() + 10
            while True:
                samples = scrape(env)
                done = value(samples, "portside_yjs_write_batches_total") > value(
                    before, "portside_yjs_write_batches_total"
                )
                if done or time.monotonic() > deadline:
                    return samples
                await asyncio.sleep(0.1)
        finally:
            await client.close()

    during = asyncio.run(edit())
    assert value(during, "portside_yjs_rooms_open") >= 1 and value(during, "portside_yjs_clients") >= 1
    updates = "portside_yjs_updates_applied_total"
    assert value(during, updates) - value(before, updates) == 1
    batch = "portside_db_write_batch_size_count"
    assert value(during, batch, queue="yjs") > value(before, batch, queue="yjs")
    assert value(during, "portside_sessions_open", kind="yjs") >= 1


def test_smtp_message_is_counted(env: Env) -> None:
    before = scrape(env)
    raw = b"From: carol@ext.org\r\nTo: alice@example.com\r\nSubject: metrics\r\n\r\nhello metrics\r\n"
    with smtplib.SMTP("127.0.0.1", env.smtp_port, timeout=10) as s:
        s.ehlo("client.ext.org")
        assert s.sendmail("carol@ext.org", [ALICE], raw) == {}
        during = scrape(env)
        assert value(during, "portside_port_connections_open", protocol="smtp") >= 1
    after = wait_for(
        env,
        lambda s: (
            value(s, "portside_port_connections_open", protocol="smtp")
            == value(before, "portside_port_connections_open", protocol="smtp")
        ),
    )

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("portside_mail_messages_received_total", result="accepted") == 1
    assert moved("portside_db_write_batch_size_count", queue="mail") == 1  # its group commit
    assert moved("portside_port_connections_total", protocol="smtp") == 1
    for verb in ("EHLO", "MAIL", "RCPT", "DATA", "QUIT"):
        assert moved("portside_port_commands_total", protocol="smtp", command=verb) == 1, verb
    assert moved("portside_port_received_bytes_total", protocol="smtp") >= len(raw)
    assert value(after, "portside_port_connections_open", protocol="smtp") == value(
        before, "portside_port_connections_open", protocol="smtp"
    )
    assert ("portside_mail_outbox_waiting", ()) in after


def test_imap_logins_and_commands_are_counted(env: Env) -> None:
    before = scrape(env)
    m = imaplib.IMAP4("127.0.0.1", env.port("imap"), timeout=20)
    m.starttls(tls_context())
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login(ALICE, "not-the-password")
    m.logout()
    m = imaplib.IMAP4("127.0.0.1", env.port("imap"), timeout=20)
    m.starttls(tls_context())
    assert m.login(ALICE, ALICE_PW)[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    during = scrape(env)
    assert value(during, "portside_sessions_open", kind="imap") >= 1
    assert value(during, "portside_port_connections_open", protocol="imap") >= 1
    m.logout()
    after = scrape(env)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("portside_logins_total", protocol="imap", result="ok") == 1
    assert moved("portside_logins_total", protocol="imap", result="failed") == 1
    assert moved("portside_port_connections_total", protocol="imap") == 2
    assert moved("portside_port_commands_total", protocol="imap", command="LOGIN") == 2
    assert moved("portside_port_commands_total", protocol="imap", command="STARTTLS") == 2
    assert moved("portside_port_commands_total", protocol="imap", command="SELECT") == 1


def test_ftp_logins_and_commands_are_counted(env: Env) -> None:
    before = scrape(env)
    f = ftplib.FTP(timeout=20)
    f.connect("127.0.0.1", env.port("ftp"))
    with pytest.raises(ftplib.error_perm):
        f.login(env.emails["owner"], "not-the-password")
    f.close()
    f = ftplib.FTP(timeout=20)
    f.connect("127.0.0.1", env.port("ftp"))
    f.login(env.emails["owner"], PASSWORD)
    f.pwd()
    f.quit()
    after = wait_for(
        env,
        lambda s: (
            value(s, "portside_port_connections_open", protocol="ftp")
            == value(before, "portside_port_connections_open", protocol="ftp")
        ),
    )

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("portside_logins_total", protocol="ftp", result="ok") == 1
    assert moved("portside_logins_total", protocol="ftp", result="failed") == 1
    assert moved("portside_port_connections_total", protocol="ftp") == 2
    assert moved("portside_port_commands_total", protocol="ftp", command="PASS") == 2
    assert moved("portside_port_commands_total", protocol="ftp", command="PWD") == 1
    assert value(after, "portside_port_connections_open", protocol="ftp") == value(
        before, "portside_port_connections_open", protocol="ftp"
    )


# -- what a scrape never shows ----------------------------------------------------------------------------

SAFE_LABEL = re.compile(r"^[A-Za-z0-9_.+{}/*\-]*$")


def test_no_secrets_emails_or_raw_paths_in_labels(env: Env) -> None:
    w = env.world
    with w.c(w.admin) as c:
        text = c.get("/metrics").text
        assert c.get(f"/api/user_account?token={w.owner}").status_code in (200, 401)  # a token in a raw URL
        text = c.get("/metrics").text
    secrets = [w.admin, w.owner, w.member, w.stranger, PASSWORD, ALICE_PW, *env.emails.values(), ALICE]
    for secret in secrets:
        assert secret not in text
    assert "@" not in text
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("portside_"):
            continue
        for sample in family.samples:
            for key, label in sample.labels.items():
                assert SAFE_LABEL.match(label), (sample.name, key, label)
                if key == "route":
                    assert label == "other" or label.startswith("/"), label
                    assert "?" not in label and "token" not in label


# -- the separate listener --------------------------------------------------------------------------------


def test_separate_listener_follows_config_live(env: Env) -> None:
    w = env.world
    server = w.server
    scrape(env)  # one request to /metrics on the HTTP port, to find in the separate listener's text
    mark = len(server.log)
    set_key(w, "metrics.listen_interface", "127.0.0.1:0")
    url = server.wait_listening("metrics", mark)
    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.get("/metrics")  # no credentials: the listener is for a scraper on a private address
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert value(parse(r.text), "portside_http_requests_total", method="GET", route="/metrics", status="2xx") >= 1
        assert c.get("/_ports").status_code == 404 and c.get("/api/usergroup").status_code == 404
        assert c.post("/metrics").status_code == 405
    with w.c(w.admin) as c:
        listed = {p["name"]: p for p in c.get("/_ports").json()}
    assert listed["metrics"]["url"] == url and listed["metrics"]["state"] == "running"
    mark = len(server.log)
    set_key(w, "metrics.listen_interface", "not-an-interface")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with w.c(w.admin) as c:
            listed = {p["name"]: p for p in c.get("/_ports").json()}
        if listed.get("metrics", {}).get("state") == "failed":
            break
        time.sleep(0.1)
    assert listed["metrics"]["state"] == "failed" and "metrics.listen_interface" in listed["metrics"]["error"]
    set_key(w, "metrics.listen_interface", "")
    server.wait_line(r"^portside: metrics stopped$", mark)
    with pytest.raises(httpx.TransportError), httpx.Client(timeout=5) as c:
        c.get(url + "/metrics")
    with w.c(w.admin) as c:
        assert "metrics" not in {p["name"] for p in c.get("/_ports").json()}
