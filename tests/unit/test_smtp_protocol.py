"""PortsideSMTP's per-connection shortcuts keep aiosmtpd's behaviour: the same dispatch tables from the
short `dir`, and a multi-line reply sent whole, in one write, over a real socket."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from portside.smtp.protocol import PortsideSMTP


class Hooks:
    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        return [*responses[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250 HELP"]


def test_dispatch_tables_are_those_of_the_full_dir() -> None:
    async def main() -> None:
        proto = PortsideSMTP(
            Hooks(), implicit_tls=False, max_size=1000, hostname="mx.test", loop=asyncio.get_running_loop()
        )
        every = object.__dir__(proto)  # what dir() lists without the override
        assert sorted(proto._smtp_methods) == sorted(n[len("smtp_") :] for n in every if n.startswith("smtp_"))
        assert sorted(proto._auth_methods) == ["LOGIN", "PLAIN"]
        assert {n for n in every if n.startswith("auth_")} == {"auth_LOGIN", "auth_PLAIN"}
        assert "EHLO" in proto._smtp_methods and "DATA" in proto._smtp_methods

    asyncio.run(main())


def test_multi_line_reply_is_one_write() -> None:
    async def main() -> tuple[bytes, list[bytes]]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        proto = PortsideSMTP(Hooks(), implicit_tls=False, max_size=1000, hostname="mx.test", loop=loop)
        writes: list[bytes] = []
        made = proto.connection_made

        def connection_made(transport: Any) -> None:
            real = transport.write

            def write(data: bytes) -> None:
                writes.append(bytes(data))
                real(data)

            transport.write = write
            made(transport)

        proto.connection_made = connection_made  # type: ignore[method-assign]
        await loop.connect_accepted_socket(lambda: proto, ours)
        reader, writer = await asyncio.open_connection(sock=theirs)
        await reader.readline()  # banner
        writer.write(b"EHLO client.test\r\n")
        lines = [await reader.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(await reader.readline())
        writer.write(b"QUIT\r\n")
        await reader.readline()
        writer.close()
        return b"".join(lines), writes

    reply, writes = asyncio.run(main())
    assert reply.startswith(b"250-mx.test\r\n") and reply.endswith(b"250 HELP\r\n")
    assert b"250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n" in reply
    assert reply in writes  # the whole EHLO reply went out in one write
    assert len(writes) == 3  # banner, EHLO, QUIT


def test_portside_handler_hooks_without_the_signature_probe() -> None:
    from types import SimpleNamespace

    from portside.smtp.handler import Handler

    async def main() -> None:
        handler = Handler(SimpleNamespace(hostname="mx.test", server_id=None), "", False)  # type: ignore[arg-type]
        proto = PortsideSMTP(
            handler, implicit_tls=False, max_size=1000, hostname="mx.test", loop=asyncio.get_running_loop()
        )
        assert proto._ehlo_hook_ver == "new" and proto._handle_hooks["EHLO"] == handler.handle_EHLO
        every = {n[len("handle_") :] for n in object.__dir__(handler) if n.startswith("handle_")}
        assert set(proto._handle_hooks) == every  # the full dir's hooks, EHLO included

    asyncio.run(main())
