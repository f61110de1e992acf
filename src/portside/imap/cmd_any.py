"""Commands valid in every state: CAPABILITY, NOOP, LOGOUT, ID, ENABLE."""

from __future__ import annotations

from portside.imap import wire
from portside.imap.base import SessionBase
from portside.imap.response import string

BASE_CAPS = ("IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE")
AUTH_CAPS = (
    "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT", "CHILDREN", "SPECIAL-USE", "CREATE-SPECIAL-USE",
    "LIST-EXTENDED", "LIST-STATUS", "CONDSTORE", "QRESYNC", "ESEARCH", "SEARCHRES", "BINARY", "STATUS=SIZE",
)  # fmt: skip
ENABLEABLE = ("CONDSTORE", "QRESYNC", "IMAP4REV2")
ENABLED_NAMES = {"IMAP4REV2": "IMAP4rev2"}  # as advertised


class AnyState(SessionBase):
    def capabilities(self) -> list[str]:
        caps = list(BASE_CAPS)
        if self.state == "not-authenticated":
            if not self.tls and self.options.tls_context is not None:
                caps.append("STARTTLS")
            if self.tls or self.options.allow_plaintext_login:
                caps.append("AUTH=PLAIN")
            else:
                caps.append("LOGINDISABLED")
        else:
            caps += AUTH_CAPS
        caps.append(f"APPENDLIMIT={self.backend.append_limit}")
        return caps

    async def cmd_CAPABILITY(self, args: list[bytes]) -> None:
        if wire.tokenize(args):
            raise wire.ParseError("CAPABILITY takes no arguments")
        await self.untagged("CAPABILITY " + " ".join(self.capabilities()))
        await self.done()

    async def cmd_NOOP(self, args: list[bytes]) -> None:
        if self.selected is not None:
            self.selected.dirty = True  # a NOOP is how clients ask: report what changed
        await self.done()

    async def cmd_LOGOUT(self, args: list[bytes]) -> None:
        await self.untagged("BYE Logging out")
        self.state = "logout"
        await self.tagged("OK", "LOGOUT completed")

    async def cmd_ID(self, args: list[bytes]) -> None:
        tokens = wire.tokenize(args)
        if len(tokens) != 1 or not (isinstance(tokens[0], list) or tokens[0] == "NIL"):
            raise wire.ParseError("ID expects a parameter list or NIL")
        params = b" ".join(string(k) + b" " + string(v) for k, v in self.options.server_id.items())
        await self.untagged(b"ID (" + params + b")")
        await self.done()

    async def cmd_ENABLE(self, args: list[bytes]) -> None:
        tokens = wire.tokenize(args)
        if not tokens or self.state == "not-authenticated":
            raise wire.ParseError("ENABLE needs capabilities and a login")
        now: list[str] = []
        for tok in tokens:
            cap = wire.atom(tok, "capability").upper()
            if cap in ENABLEABLE and cap not in self.enabled:
                now.append(ENABLED_NAMES.get(cap, cap))
                self.enabled.add(cap)
                if cap == "QRESYNC" and "CONDSTORE" not in self.enabled:
                    self.enabled.add("CONDSTORE")
        if self.selected is not None:
            self.selected.condstore = self.condstore
            self.selected.rev2 = self.rev2
        await self.untagged(" ".join(["ENABLED", *now]))
        await self.done()
