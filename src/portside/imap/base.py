"""The core of one IMAP session: state, writing replies, and reading/dispatching commands.

Each command is a method `cmd_<NAME>` on a command-family mixin (cmd_any, cmd_login, cmd_mailbox,
cmd_selected, cmd_fetch); `COMMANDS` says in which states it is allowed. Failures are exceptions: a
`ParseError` ends the command with BAD, a `portside.errors` error with the reply its kind maps to
(`tools.wire_errors.imap_reply`), `Refused` with NO and an explicit response code.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from portside import log
from portside.errors import PortsideError
from portside.imap import names, seqset, wire
from portside.imap.response import astring
from portside.imap.selected import Selected
from portside.imap.store import Account, Backend
from portside.tools import metrics
from portside.tools.wire_errors import imap_reply

logger = log.get("imap")
State = Literal["not-authenticated", "authenticated", "selected", "logout"]
ANY: frozenset[State] = frozenset({"not-authenticated", "authenticated", "selected"})
AUTH: frozenset[State] = frozenset({"authenticated", "selected"})
SELECTED: frozenset[State] = frozenset({"selected"})
NOT_AUTH: frozenset[State] = frozenset({"not-authenticated"})

_COMMAND_STATES: tuple[tuple[str, frozenset[State]], ...] = (
    ("CAPABILITY NOOP LOGOUT ID ENABLE", ANY),
    ("STARTTLS LOGIN AUTHENTICATE", NOT_AUTH),
    ("SELECT EXAMINE CREATE DELETE RENAME SUBSCRIBE UNSUBSCRIBE LIST LSUB NAMESPACE STATUS APPEND IDLE", AUTH),
    ("UNSELECT CHECK CLOSE EXPUNGE SEARCH FETCH STORE COPY MOVE UID", SELECTED),
)
COMMANDS: dict[str, frozenset[State]] = {name: states for names, states in _COMMAND_STATES for name in names.split()}
# commands during which no EXPUNGE may be sent (RFC 3501 §7.4.1): sequence numbers must stay put
NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH"})
MAX_BAD = 20  # consecutive malformed commands before the connection is dropped
IDLE_TIMEOUT = 30 * 60.0
FLUSH_AT = 64 * 1024  # buffered response bytes written at once
# commands per second one session may send on average (a burst of BURST goes at once) ... beyond that,
# reading its next command waits: the client is slowed, not dropped. The burst covers a sync client's
# pipelined FETCH of a whole large mailbox (mbsync sends one per message; 200/s made a 10,000-message
# initial sync take 45 s of sleeping); the rate still bounds a flood to what one session may take.
RATE = 2000.0
BURST = 20000.0
LOGIN_TIMEOUT = 60.0


class Refused(Exception):
    """A command refused with NO and an optional response code (`NO [CODE] text`)."""

    def __init__(self, text: str, code: str | None = None):
        super().__init__(text)
        self.code = code


class Bye(Exception):
    """End the session with `* BYE text`."""


@dataclass
class Options:
    hostname: str = "localhost"
    tls_context: Callable[[], ssl.SSLContext] | None = None  # STARTTLS; None: not offered
    implicit_tls: bool = False
    allow_plaintext_login: bool = False
    max_line: int = wire.MAX_LINE
    idle_timeout: float = IDLE_TIMEOUT
    login_timeout: float = LOGIN_TIMEOUT
    server_id: dict[str, str] = field(default_factory=lambda: {"name": "Portside"})


class SessionBase:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        backend: Backend,
        options: Options,
        address: str,
    ):
        self.reader, self.writer, self.backend, self.options, self.address = reader, writer, backend, options, address
        self.state: State = "not-authenticated"
        self.tls = options.implicit_tls
        self.account: Account | None = None
        self.selected: Selected | None = None
        self.enabled: set[str] = set()
        self.saved: list[int] = []  # UIDs of the last `SEARCH RETURN (SAVE)` (SEARCHRES `$`)
        self.last_fetched = 0  # sequence number of the message a one-message body FETCH read last...
        self.read_ahead = 0  # ...and of the last one whose body was read ahead with it (cmd_fetch)
        self.tag = "*"
        self.command = ""
        self.uid = False  # the running command came as UID <command>
        self._bad = 0
        self._tokens = BURST
        self._refilled = 0.0
        self._out: list[bytes] = []
        self._pending = 0
        self._close_session: Callable[[], None] | None = None
        self.ended: str | None = None

    # -- writing -----------------------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        self.queue(data)
        await self.flush()

    def queue(self, data: bytes) -> None:
        """Buffer one response line (written by the next flush: one TLS record for many lines)."""
        self._out.append(data if data.endswith(b"\r\n") else data + b"\r\n")
        self._pending += len(data)

    async def flush(self) -> None:
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()
            self._pending = 0
        await self.writer.drain()

    async def maybe_flush(self) -> None:
        """Flush once enough is buffered (a long FETCH streams instead of building up in memory)."""
        if self._pending >= FLUSH_AT:
            await self.flush()

    async def untagged(self, text: str | bytes) -> None:
        await self.send(b"* " + (text.encode() if isinstance(text, str) else text))

    async def tagged(self, status: str, text: str, code: str | None = None) -> None:
        coded = f"[{code}] " if code else ""
        self.queue(f"{self.tag} {status} {coded}{text}".encode())
        if self._more_input():  # a pipelined command is already here: its reply goes out with this one
            await self.maybe_flush()
        else:
            await self.flush()

    def _more_input(self) -> bool:
        """A complete line of the next command is already read (and decrypted): reading it will not wait."""
        buffered = getattr(self.reader, "_buffer", None)
        return isinstance(buffered, bytearray) and b"\n" in buffered

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def rev2(self) -> bool:
        """IMAP4rev2 (RFC 9051) enabled: no `\\Recent`, ESEARCH for every SEARCH, no `[UNSEEN n]`."""
        return "IMAP4REV2" in self.enabled

    def box_name(self, token: wire.Token | None, what: str = "mailbox name", *, new: bool = False) -> str:
        """A mailbox name (or LIST reference or pattern) as the client sent it, as stored text: modified
        UTF-7 decoded unless IMAP4rev2 (UTF-8 names) is enabled. Text that is not valid modified UTF-7 is
        taken as it is where a name is looked up (no mailbox has it: NO, as Dovecot answers); a `new` name
        (CREATE, RENAME's target) is refused with NO."""
        text = wire.text(token, what)
        if self.rev2:
            return text
        try:
            return names.from_mutf7(text)
        except wire.ParseError:
            if new:
                raise Refused("Mailbox name is not valid modified UTF-7", "CANNOT") from None
            return text

    def wire_box(self, name: str) -> bytes:
        """A stored mailbox name as this session writes it: modified UTF-7 unless IMAP4rev2 is enabled, whose
        quoted strings carry UTF-8 (RFC 9051 §4.3)."""
        return astring(name, utf8=True) if self.rev2 else astring(names.to_mutf7(name))

    def enable_condstore(self) -> None:
        """CONDSTORE switched on by a command that uses it (RFC 7162 §3.1): report HIGHESTMODSEQ once."""
        if "CONDSTORE" in self.enabled:
            return
        self.enabled.add("CONDSTORE")
        if self.selected is not None:
            self.selected.condstore = True
            self.queue(b"* OK [HIGHESTMODSEQ %d] Highest" % self.selected.mailbox.highestmodseq)

    def need_account(self) -> Account:
        if self.account is None:
            raise Refused("Not logged in")
        return self.account

    def need_selected(self) -> Selected:
        if self.selected is None:
            raise Refused("No mailbox selected")
        return self.selected

    def numbers(self, sel: Selected, token: wire.Token) -> list[int]:
        """The UIDs a sequence set (or, under UID, a UID set) names, ascending."""
        text = wire.atom(token, "sequence set")
        if text == "$":  # RFC 5182: the saved search result (UIDs), whatever is still there
            return sorted(u for u in set(self.saved) if u in sel.info)
        parsed = seqset.parse(text)
        if self.uid:
            return parsed.select(sel.uids)
        if not sel.uids:
            raise wire.ParseError("No messages")
        out: list[int] = []
        for lo, hi in parsed.bounds(len(sel.uids)):
            if hi > len(sel.uids):
                raise wire.ParseError("Invalid messageset")
            out.extend(range(lo, hi + 1))
        return [sel.uids[s - 1] for s in sorted(set(out))]

    # -- the command loop --------------------------------------------------------------------------------

    async def go_ahead(self) -> None:
        await self.send(b"+ Ready for literal data")

    async def read_command(self) -> list[bytes]:
        limit = self.backend.append_limit + 64 * 1024 if self.state in AUTH else self.options.max_line
        timeout = self.options.idle_timeout if self.state in AUTH else self.options.login_timeout
        try:
            async with asyncio.timeout(timeout):  # no task per command (wait_for makes one)
                return await wire.read_command(
                    self.reader, self.go_ahead, max_line=self.options.max_line, max_literal=limit
                )
        except TimeoutError:
            raise Bye("Disconnected for inactivity.") from None

    async def run(self) -> None:
        try:
            await self.greet()
            while self.state != "logout" and self.ended is None:
                try:
                    segments = await self.read_command()
                except wire.TooLong as exc:
                    self.tag = exc.tag or "*"
                    if exc.literal:
                        await self.tagged("NO", "Literal too large", "TOOBIG")
                    else:
                        await self.tagged("BAD", str(exc))
                    await self._count_bad()
                    continue
                await self._pace()
                await self.handle(segments)
        except (wire.Closed, ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except Bye as exc:
            with contextlib.suppress(Exception):
                await self.untagged(f"BYE {exc}")
        finally:
            await self.finish()

    async def _pace(self) -> None:
        """The command rate bound (a token bucket per session)."""
        now = asyncio.get_running_loop().time()
        if self._refilled:
            self._tokens = min(BURST, self._tokens + (now - self._refilled) * RATE)
        self._refilled = now
        self._tokens -= 1
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / RATE)

    async def greet(self) -> None:
        caps = " ".join(self.capabilities())
        await self.untagged(f"OK [CAPABILITY {caps}] {self.options.hostname} IMAP4rev1 Service Ready")

    def capabilities(self) -> list[str]:
        raise NotImplementedError

    async def _count_bad(self) -> None:
        self._bad += 1
        if self._bad >= MAX_BAD:
            raise Bye("Too many invalid commands.")

    async def handle(self, segments: list[bytes]) -> None:
        self.tag = "*"
        self.uid = False
        try:
            tag, name, rest = wire.split_head(segments)
            self.tag, self.command = tag, name
            metrics.command("imap", name, COMMANDS)
            allowed = COMMANDS.get(name)
            if allowed is None:
                raise wire.ParseError("Unknown command")
            if self.state not in allowed:
                raise wire.ParseError(f"{name} not allowed now")
            method: Callable[[list[bytes]], Awaitable[None]] = getattr(self, f"cmd_{name}")
            if self.selected is not None and self.selected.dirty and name not in ("UID", "IDLE"):
                # the command sees what changed meanwhile (written with its own reply)
                await self.sync(expunge=name not in NO_EXPUNGE, flush=False)
            await method(rest)
            self._bad = 0
        except wire.ParseError as exc:
            await self.sync(expunge=False)
            await self.tagged("BAD", f"Error in IMAP command {self.command or ''}: {exc}".replace("  ", " "))
            await self._count_bad()
        except Refused as exc:
            await self.sync(expunge=self.command not in NO_EXPUNGE or self.uid)
            await self.tagged("NO", str(exc), exc.code)
        except PortsideError as exc:
            status, code = imap_reply(exc.kind)
            if status == "BYE":
                raise Bye(exc.detail) from None
            await self.tagged(status, exc.detail, code)
        except (wire.Closed, ConnectionError, Bye, asyncio.CancelledError):
            raise
        except Exception:  # a bug or a storage failure: this command fails, the session goes on
            logger.exception("IMAP %s from %s failed", self.command, self.address)
            await self.tagged("NO", "Internal error", "SERVERBUG")

    async def done(self, text: str | None = None, code: str | None = None) -> None:
        """Report pending mailbox changes, then the tagged OK."""
        await self.sync(expunge=self.command not in NO_EXPUNGE or self.uid, flush=False)
        name = f"UID {self.command}" if self.uid else self.command
        await self.tagged("OK", text or f"{name} completed", code)

    async def sync(self, *, expunge: bool, flush: bool = True) -> None:
        """Send what changed in the selected mailbox since the last report (EXISTS, EXPUNGE, FETCH FLAGS);
        `flush=False`: only queue them (a tagged reply follows and writes them along)."""
        if self.selected is None or self.account is None:
            return
        for line in await self.selected.refresh(self.account, expunge=expunge, qresync=self.qresync):
            self.queue(b"* " + line)
        if flush:
            await self.flush()

    async def finish(self) -> None:
        if self._out:  # replies held back for a pipelined command that never came
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush(), 2)
        if self._close_session is not None:
            self._close_session()
            self._close_session = None
        if self.selected is not None:
            self.selected.close()
            self.selected = None
        if self.account is not None:
            with contextlib.suppress(Exception):
                await self.account.close()
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2)

    def end(self, reason: str) -> None:
        """The session registry ended this session (credentials revoked): BYE and close."""
        self.ended = reason
        with contextlib.suppress(Exception):
            self.writer.write(f"* BYE {reason}\r\n".encode())
            self.writer.close()
