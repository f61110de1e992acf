"""The README's introduction tells the truth: every port it calls built answers its protocol on a real
server, and none of them is described as future work."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import websockets

from support import Server, new_user

ROOT = Path(__file__).resolve().parents[2]


def intro() -> str:
    text = (ROOT / "README.md").read_text()
    return text[: text.index("\n## ")]


def built_ports() -> list[str]:
    """The backticked paths of the sentence that ends in 'are built'."""
    m = re.search(r"same data:(.*?)are built", intro(), re.S)
    assert m, "the README introduction does not say which ports are built"
    return re.findall(r"`(/[a-z_]+)`", m.group(1))


def test_built_ports_are_not_called_future_work() -> None:
    ports = built_ports()
    assert {"/live", "/yjs", "/feed"} <= set(ports), ports
    future = re.split(r"are built", intro(), maxsplit=1)[1]
    assert "later phase" not in intro().lower()
    for name in ("WebSocket", "Yjs", "RSS", "Atom", "feed"):
        assert name not in future, f"{name} is described after 'are built' as not there yet"


def test_every_built_port_answers_its_protocol(sqlite_server: Server) -> None:
    _, token = new_user(sqlite_server, "intro")
    ws = sqlite_server.url.replace("http://", "ws://")
    answered: set[str] = set()

    async def handshake(path: str) -> None:
        async with websockets.connect(f"{ws}{path}?token={token}", max_size=None) as sock:
            assert sock.protocol.state.name == "OPEN"

    for port in built_ports():
        if port == "/live":
            asyncio.run(handshake("/live"))
        elif port == "/yjs":
            asyncio.run(handshake("/yjs/readme-intro-room"))
        elif port == "/feed":
            with sqlite_server.client() as c:
                r = c.get("/feed/no-such-feed.rss")
            # the feed route itself answers (a route miss has the generic "Not Found" detail)
            assert r.status_code == 404 and "feed" in r.json()["errors"][0]["detail"], r.text
        else:
            raise AssertionError(f"README calls {port} built but this test does not know how to reach it")
        answered.add(port)
    assert answered == set(built_ports())
