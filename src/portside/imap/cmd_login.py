"""Not-authenticated commands: STARTTLS, LOGIN, AUTHENTICATE PLAIN (with SASL-IR).

Before TLS no credentials are taken (LOGINDISABLED, `NO [PRIVACYREQUIRED]`) unless the listener allows it.
Credentials go to the backend (auth.login: password or application password, throttled per address).
"""

from __future__ import annotations

import asyncio
import base64
import binascii

from portside.errors import PortsideError
from portside.imap import wire
from portside.imap.base import Refused, SessionBase, logger
from portside.tools.wire_errors import imap_reply


class LoginCommands(SessionBase):
    async def cmd_STARTTLS(self, args: list[bytes]) -> None:
        if wire.tokenize(args):
            raise wire.ParseError("STARTTLS takes no arguments")
        if self.tls or self.options.tls_context is None:
            raise wire.ParseError("TLS is already active" if self.tls else "STARTTLS is not offered")
        if self.reader._buffer:  # type: ignore[attr-defined]  # pipelined plaintext after STARTTLS: refuse
            raise wire.ParseError("data after STARTTLS")
        await self.tagged("OK", "Begin TLS negotiation now")
        await self.writer.start_tls(self.options.tls_context())
        self.tls = True

    def _plain_refused(self) -> bool:
        return not self.tls and not self.options.allow_plaintext_login

    async def cmd_LOGIN(self, args: list[bytes]) -> None:
        tokens = wire.tokenize(args)
        if len(tokens) != 2:
            raise wire.ParseError("LOGIN expects user name and password")
        user, secret = wire.text(tokens[0], "user name"), wire.text(tokens[1], "password")
        if self._plain_refused():
            raise Refused("Authentication disabled", "PRIVACYREQUIRED")
        await self._login(user, secret)

    async def cmd_AUTHENTICATE(self, args: list[bytes]) -> None:
        tokens = wire.tokenize(args)
        if not 1 <= len(tokens) <= 2:
            raise wire.ParseError("AUTHENTICATE expects a mechanism")
        mech = wire.atom(tokens[0], "mechanism").upper()
        if mech != "PLAIN":
            raise Refused("Unsupported authentication mechanism", "CANNOT")
        if self._plain_refused():
            raise Refused("Authentication disabled", "PRIVACYREQUIRED")
        if len(tokens) == 2:
            answer = wire.atom(tokens[1], "initial response")
        else:
            await self.send(b"+ ")
            line = await wire.read_line(self.reader, self.options.max_line)
            answer = line.decode("ascii", "replace").strip()
        if answer == "*":
            raise wire.ParseError("Authentication cancelled")
        try:
            data = base64.b64decode("" if answer == "=" else answer, validate=True)
            authz, user, secret = (p.decode("utf-8") for p in data.split(b"\x00"))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise wire.ParseError("Invalid SASL PLAIN response") from None
        if authz and authz != user:
            raise Refused("Authorization identity must equal the user", "AUTHORIZATIONFAILED")
        await self._login(user, secret)

    async def _login(self, user: str, secret: str) -> None:
        try:
            account = await self.backend.login(user, secret, self.address)
        except PortsideError as exc:
            status, code = imap_reply(exc.kind)
            await asyncio.sleep(0)  # the backend throttles; nothing to add here
            await self.tagged("NO" if status == "BYE" else status, exc.detail, code)
            return
        self.account = account
        self.state = "authenticated"
        self._close_session = self.backend.end_session(account, self.end)
        logger.info("imap login %s from %s", account.username, self.address)
        await self.tagged("OK", f"{self.command} completed", "CAPABILITY " + " ".join(self.capabilities()))
