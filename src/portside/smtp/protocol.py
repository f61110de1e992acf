"""One SMTP connection: aiosmtpd's protocol with Portside's replies, AUTH and limits.

aiosmtpd runs the dialogue (verbs as `smtp_VERB` methods, hooks on the handler); this subclass

- checks AUTH PLAIN and LOGIN asynchronously through `auth.login.login_mail` (aiosmtpd's authenticator
  callback is synchronous), only once TLS is on (STARTTLS or implicit TLS), throttled per account+address;
- gives aiosmtpd's own replies enhanced status codes (`552 5.3.4` for too much data, which also ends the
  connection; `503 5.5.1 Error: No recipients`, ...): `REWRITE`;
- sends a multi-line reply (EHLO) in one write instead of one per line (one segment, one wake-up of the
  client);
- knows whether the connection is TLS (implicit TLS is not visible to aiosmtpd's STARTTLS state).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from base64 import b64decode
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from portside.errors import PortsideError
from portside.tools import metrics
from portside.tools.wire_errors import smtp_reply

REWRITE = {
    "503 Error: need RCPT command": "503 5.5.1 Error: No recipients",
    "503 Error: need MAIL command": "503 5.5.1 Error: No sender",
    "503 Error: nested MAIL command": "503 5.5.1 Error: nested MAIL command",
    "552 Error: message size exceeds fixed maximum message size": "552 5.3.4 Error: message size exceeds fixed maximum",
    "530 Must issue a STARTTLS command first": "530 5.7.0 Must issue a STARTTLS command first",
    "221 Bye": "221 2.0.0 Bye",
    "500 Error: bad syntax": "500 5.5.2 Error: bad syntax",
    "500 Command line too long": "500 5.5.2 Error: command line too long",
    "500 Line too long (see RFC5321 4.5.3.1.6)": "500 5.5.2 Error: line too long",
    "501 Syntax: MAIL FROM: <address>": "501 5.5.4 Syntax: MAIL FROM:<address>",
    "501 Syntax: RCPT TO: <address>": "501 5.5.4 Syntax: RCPT TO:<address>",
    "503 Already authenticated": "503 5.5.1 Error: already authenticated",
}
TOO_MUCH = "552 Error: Too much mail data"
_VERB_PREFIXES = ("smtp_", "auth_")
AUTH_OK = "235 2.7.0 Authentication successful"


_VERBS: dict[type, tuple[str, ...]] = {}
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
# `<local@domain>` of dot-atoms, then the parameters (what aiosmtpd's parser returns as the rest)
_PLAIN_PATH = re.compile(rf"[ \t]*<({_DOT_ATOM}@{_DOT_ATOM})>(?:[ \t]+(.*))?", re.DOTALL)


def _verbs_of(cls: type) -> tuple[str, ...]:
    found = _VERBS.get(cls)
    if found is None:
        found = _VERBS[cls] = tuple(name for name in dir(cls) if name.startswith(_VERB_PREFIXES))
    return found


class PortsideSMTP(SMTP):
    """aiosmtpd's SMTP with Portside's AUTH, replies and TLS knowledge (one instance per connection)."""

    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, handler: Any, *, implicit_tls: bool, max_size: int, **kwargs: Any):
        super().__init__(handler, **kwargs)
        if "EHLO" not in self._handle_hooks and hasattr(handler, "handle_EHLO"):
            # the 5-argument hook, added after aiosmtpd's set-up: it reads a found hook's signature (to tell the
            # old 4-argument form) on every connection, a measurable part of a connection's cost
            self._handle_hooks["EHLO"] = handler.handle_EHLO
            self._ehlo_hook_ver = "new"
        self._smtp_methods = metrics.counting("smtp", self._smtp_methods)
        self.implicit_tls = implicit_tls
        self.max_size = max_size
        self._continued: list[str] = []  # lines of a multi-line reply waiting for its last line

    def __dir__(self) -> list[str]:
        """The verb and AUTH methods only (of the class: no instance sets any). aiosmtpd's `__init__` builds its
        dispatch tables on every connection from `dir(self)` and `inspect.getmembers(self)` (which reads every
        attribute), keeping only names that start with `smtp_` / `auth_`: listing just those gives the same
        tables for a fraction of the cost."""
        return list(_verbs_of(type(self)))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's MAIL/RCPT address parse, without the header parser for the plain `<local@domain>` form
        (the parser builds a token tree: most of MAIL's and RCPT's cost); anything else takes aiosmtpd's way."""
        m = _PLAIN_PATH.fullmatch(arg)
        if m is None or "(" in (m.group(2) or ""):
            return super()._getaddr(arg)  # type: ignore[no-any-return]
        addr = m.group(1)
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, m.group(2) or ""

    @property
    def is_tls(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

    async def push(self, status: Any) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        if text == TOO_MUCH:
            await super().push(f"552 5.3.4 Error: message too big (maximum {self.max_size} bytes)")
            if self.transport is not None:
                self.transport.close()
            return
        if text.startswith('500 Error: command "'):
            text = "500 5.5.2 Error: command not recognized"
        line = REWRITE.get(text, text)
        if line[3:4] == "-":  # a multi-line reply (EHLO) leaves in one write with its last line, not one per line
            self._continued.append(line)
            return
        if self._continued:
            line = "\r\n".join([*self._continued, line])
            self._continued.clear()
        await super().push(line)

    # -- AUTH PLAIN / LOGIN, checked through the kit's login ---------------------------------------

    async def _login(self, login: bytes, password: bytes) -> AuthResult:
        try:
            result = await self.event_handler.login(login.decode("utf-8", "strict"), password.decode("utf-8", "strict"))
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False)
        except PortsideError as exc:
            await super().push(smtp_reply(exc))
            return AuthResult(success=False, handled=True)
        return (
            AuthResult(success=True, handled=False, auth_data=LoginPassword(login, b""), message=AUTH_OK)
            if (result)
            else AuthResult(success=False, handled=False)
        )

    async def _decode(self, blob: str) -> bytes | None:
        try:
            return b64decode(blob.encode(), validate=True)
        except Exception:
            await super().push("501 5.5.2 Can't decode base64")
            return None

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            got = await self.challenge_auth("")
            if not isinstance(got, bytes):
                return AuthResult(success=False, handled=True)
            data: bytes | None = got
        else:
            data = await self._decode(args[1])
        if data is None:
            return AuthResult(success=False, handled=True)
        parts = data.split(b"\x00")
        if len(parts) != 3:
            await super().push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        return await self._login(parts[1], parts[2])

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            got = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if not isinstance(got, bytes):
                return AuthResult(success=False, handled=True)
            login: bytes | None = got
        else:
            login = await self._decode(args[1])
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._login(login, password)

    def close_now(self) -> None:
        """End the connection (drain deadline, a revoked credential)."""
        if self.transport is not None:
            self.transport.close()

    async def say_and_close(self, line: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(super().push(line), 1.0)
        self.close_now()
