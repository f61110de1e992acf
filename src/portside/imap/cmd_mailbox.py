"""Authenticated-state commands on mailboxes: SELECT/EXAMINE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE,
LIST (LIST-EXTENDED, SPECIAL-USE, CHILDREN, LIST-STATUS), LSUB, NAMESPACE, STATUS, APPEND, UNSELECT."""

from __future__ import annotations

import datetime as dt
import re

from portside.errors import Kind, NotFound
from portside.imap import mime, names, seqset, wire
from portside.imap.base import Refused, SessionBase
from portside.imap.response import MONTHS, sequence_set
from portside.imap.selected import Selected
from portside.imap.store import MailboxInfo, canonical_flag, canonical_use

STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE", "DELETED")
_DATE_TIME = re.compile(r"([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z")


def parse_date_time(value: str) -> dt.datetime:
    m = _DATE_TIME.match(value)
    if m is None or m.group(2).capitalize() not in MONTHS:
        raise wire.ParseError("invalid date-time")
    sign = -1 if m.group(7) == "-" else 1
    tz = dt.timezone(sign * dt.timedelta(hours=int(m.group(8)), minutes=int(m.group(9))))
    try:
        return dt.datetime(
            int(m.group(3)),
            MONTHS.index(m.group(2).capitalize()) + 1,
            int(m.group(1)),
            int(m.group(4)),
            int(m.group(5)),
            int(m.group(6)),
            tzinfo=tz,
        )
    except ValueError:
        raise wire.ParseError("invalid date-time") from None


def status_values(info: MailboxInfo, items: list[str]) -> str:
    values = {
        "MESSAGES": info.messages,
        "RECENT": info.recent,
        "UIDNEXT": info.uidnext,
        "UIDVALIDITY": info.uidvalidity,
        "UNSEEN": info.unseen,
        "HIGHESTMODSEQ": info.highestmodseq,
        "SIZE": info.size,
        "DELETED": info.deleted,
    }
    return " ".join(f"{item} {values[item]}" for item in items)


class MailboxCommands(SessionBase):
    # -- SELECT / EXAMINE / UNSELECT ---------------------------------------------------------------------

    async def cmd_SELECT(self, args: list[bytes]) -> None:
        await self._select(args, readonly=False)

    async def cmd_EXAMINE(self, args: list[bytes]) -> None:
        await self._select(args, readonly=True)

    async def _select(self, args: list[bytes], *, readonly: bool) -> None:
        account = self.need_account()
        tokens = wire.tokenize(args)
        if not 1 <= len(tokens) <= 2:
            raise wire.ParseError("SELECT expects a mailbox name")
        name = names.canonical(self.box_name(tokens[0]))
        qresync: list[wire.Token] | None = None
        if len(tokens) == 2:
            params = wire.parenthesized(tokens[1], "select parameters")
            i = 0
            while i < len(params):
                key = wire.atom(params[i], "select parameter").upper()
                if key == "CONDSTORE":
                    self.enabled.add("CONDSTORE")
                elif key == "QRESYNC" and self.qresync and i + 1 < len(params):
                    i += 1
                    qresync = wire.parenthesized(params[i], "QRESYNC parameters")
                else:
                    raise wire.ParseError(f"unknown select parameter {key[:30]}")
                i += 1
        if self.selected is not None:
            self.selected.close()
            self.selected = None
            self.saved = []
            self.state = "authenticated"
            if self.qresync or self.rev2:
                await self.untagged("OK [CLOSED] Previous mailbox closed.")
        try:
            snap = await account.snapshot(name, claim=not readonly and not self.rev2)
        except NotFound:
            raise Refused("Mailbox doesn't exist: " + name[:100], "NONEXISTENT") from None
        uids = [m.uid for m in snap.messages]
        # claimed by this session when read-write; RFC 9051 (rev2): no \Recent, no RECENT response, no [UNSEEN n]
        recent: set[int] = set() if self.rev2 else set(snap.recent)
        sel = Selected(name, readonly, snap, recent)
        sel.condstore, sel.rev2 = self.condstore, self.rev2
        box = snap.mailbox
        for line in sel.flags_lines():
            self.queue(b"* " + line)
        self.queue(b"* %d EXISTS" % len(uids))
        if not self.rev2:
            self.queue(b"* %d RECENT" % len(recent))
            first_unseen = next((i + 1 for i, m in enumerate(snap.messages) if "\\Seen" not in m.flags), None)
            if first_unseen is not None:
                self.queue(f"* OK [UNSEEN {first_unseen}] First unseen.".encode())
        self.queue(f"* OK [UIDVALIDITY {box.uidvalidity}] UIDs valid".encode())
        self.queue(f"* OK [UIDNEXT {box.uidnext}] Predicted next UID".encode())
        self.queue(f"* OK [HIGHESTMODSEQ {box.highestmodseq}] Highest".encode())
        if qresync is not None:
            await self._qresync(account, sel, qresync)
        sel.watch(account)
        self.selected = sel
        self.state = "selected"
        await self.done(f"{self.command} completed", "READ-ONLY" if readonly else "READ-WRITE")

    async def _qresync(self, account: object, sel: Selected, params: list[wire.Token]) -> None:
        """RFC 7162 §3.2.5: VANISHED (EARLIER) and FETCH for what changed since the client's mod-sequence."""
        if len(params) < 2:
            raise wire.ParseError("QRESYNC needs uidvalidity and mod-sequence")
        uidvalidity = wire.number(params[0], "uidvalidity", nz=True)
        since = wire.number(params[1], "mod-sequence")
        known = seqset.parse(wire.atom(params[2], "known UIDs")) if len(params) > 2 else None
        if uidvalidity != sel.mailbox.uidvalidity:
            return
        assert self.account is not None
        changes = await self.account.changes(sel.name, since)
        vanished = changes.vanished
        top = sel.uids[-1] if sel.uids else 0
        if not changes.complete:  # expunges not tracked that far: every known UID that is not there now
            pool = known.numbers(max(top, 1)) if known is not None else list(range(1, max(top, 1) + 1))
            have = set(sel.uids)
            vanished = [u for u in pool if u not in have]
        if known is not None:
            vanished = [u for u in vanished if known.contains(u, max(top, 1))]
        if vanished:
            self.queue(b"* VANISHED (EARLIER) " + sequence_set(vanished).encode())
        for m in changes.changed:
            seq = sel.seq_of(m.uid)
            if seq is not None:
                self.queue(b"* %d FETCH (UID %d " % (seq, m.uid) + sel.flags_item(m.uid) + b" MODSEQ (%d))" % m.modseq)

    async def cmd_UNSELECT(self, args: list[bytes]) -> None:
        self._deselect()
        await self.done()

    def _deselect(self) -> None:
        if self.selected is not None:
            self.selected.close()
        self.selected = None
        self.saved = []
        self.state = "authenticated"

    # -- CREATE / DELETE / RENAME / SUBSCRIBE ---------------------------------------------------------------

    async def cmd_CREATE(self, args: list[bytes]) -> None:
        account = self.need_account()
        tokens = wire.tokenize(args)
        if not 1 <= len(tokens) <= 2:
            raise wire.ParseError("CREATE expects a mailbox name")
        raw = self.box_name(tokens[0], new=True).rstrip(names.DELIMITER)  # a trailing delimiter is allowed
        name = names.check(raw)
        use: str | None = None
        if len(tokens) == 2:
            opts = wire.parenthesized(tokens[1], "create parameters")
            if len(opts) != 2 or wire.atom(opts[0]).upper() != "USE":
                raise wire.ParseError("unknown create parameter")
            uses = [wire.atom(u, "special use") for u in wire.parenthesized(opts[1])]
            known = [canonical_use(u) for u in uses]
            if None in known or len(known) > 1:
                raise Refused("Unsupported special use", "USEATTR")
            use = known[0] if known else None
        if name == names.INBOX:
            raise Refused("INBOX already exists", "ALREADYEXISTS")
        existing = {m.name for m in await account.mailboxes() if m.exists}
        if name in existing:
            raise Refused("Mailbox already exists", "ALREADYEXISTS")
        for parent in names.parents(name):
            if parent not in existing:
                await account.create(parent)
        await account.create(name, use)
        await self.done()

    async def cmd_DELETE(self, args: list[bytes]) -> None:
        account = self.need_account()
        tokens = wire.tokenize(args)
        if len(tokens) != 1:
            raise wire.ParseError("DELETE expects a mailbox name")
        name = names.canonical(self.box_name(tokens[0]))
        if name == names.INBOX:
            raise Refused("cannot delete INBOX", "CANNOT")
        if self.selected is not None and self.selected.name == name:
            self._deselect()
        await account.delete(name)
        await self.done()

    async def cmd_RENAME(self, args: list[bytes]) -> None:
        account = self.need_account()
        tokens = wire.tokenize(args)
        if len(tokens) != 2:
            raise wire.ParseError("RENAME expects two mailbox names")
        old = names.canonical(self.box_name(tokens[0]))
        new = names.check(self.box_name(tokens[1], new=True))
        existing = {m.name for m in await account.mailboxes() if m.exists}
        if old not in existing:
            raise Refused("Mailbox doesn't exist", "NONEXISTENT")
        if new in existing or new == names.INBOX:
            raise Refused("Target mailbox already exists", "ALREADYEXISTS")
        if new.startswith(old + names.DELIMITER):
            raise Refused("Cannot rename a mailbox into itself", "CANNOT")
        for parent in names.parents(new):
            if parent not in existing:
                await account.create(parent)
        await account.rename(old, new)
        if old != names.INBOX:
            prefix = old + names.DELIMITER
            for child in sorted(n for n in existing if n.startswith(prefix)):
                await account.rename(child, new + child[len(old) :])
        if self.selected is not None and self.selected.name == old and old != names.INBOX:
            self._deselect()
        await self.done()

    async def cmd_SUBSCRIBE(self, args: list[bytes]) -> None:
        await self._subscribe(args, True)

    async def cmd_UNSUBSCRIBE(self, args: list[bytes]) -> None:
        await self._subscribe(args, False)

    async def _subscribe(self, args: list[bytes], on: bool) -> None:
        account = self.need_account()
        tokens = wire.tokenize(args)
        if len(tokens) != 1:
            raise wire.ParseError("expects a mailbox name")
        await account.subscribe(names.canonical(self.box_name(tokens[0])), on)
        await self.done()

    # -- NAMESPACE / STATUS -----------------------------------------------------------------------------------

    async def cmd_NAMESPACE(self, args: list[bytes]) -> None:
        await self.untagged('NAMESPACE (("" "/")) NIL NIL')
        await self.done()

    async def cmd_STATUS(self, args: list[bytes]) -> None:
        account = self.need_account()
        tokens = wire.tokenize(args)
        if len(tokens) != 2:
            raise wire.ParseError("STATUS expects a mailbox name and items")
        name = names.canonical(self.box_name(tokens[0]))
        items = [wire.atom(t, "status item").upper() for t in wire.parenthesized(tokens[1], "status items")]
        if not items or any(i not in STATUS_ITEMS for i in items):
            raise wire.ParseError("unknown status item")
        if "HIGHESTMODSEQ" in items:
            self.enable_condstore()
        try:
            info = await account.status(name)
        except NotFound:
            raise Refused("Mailbox doesn't exist: " + name[:100], "NONEXISTENT") from None
        await self.untagged(b"STATUS " + self.wire_box(name) + f" ({status_values(info, items)})".encode())
        await self.done()

    # -- APPEND -----------------------------------------------------------------------------------------------

    async def cmd_APPEND(self, args: list[bytes]) -> None:
        account = self.need_account()
        tokens = wire.tokenize(args)
        if len(tokens) < 2:
            raise wire.ParseError("APPEND expects a mailbox and a message")
        name = names.canonical(self.box_name(tokens[0]))
        message = tokens[-1]
        if not isinstance(message, bytes):
            raise wire.ParseError("message literal expected")
        middle = tokens[1:-1]
        flags: list[str] = []
        date: dt.datetime | None = None
        if middle and isinstance(middle[0], list):
            flags = [wire.atom(f, "flag") for f in wire.parenthesized(middle.pop(0))]
            checked = [canonical_flag(f) for f in flags]
            if None in checked:
                raise wire.ParseError("invalid system flag")
            flags = [f for f in checked if f is not None]
        if middle:
            date = parse_date_time(wire.text(middle.pop(0), "date-time"))
        if middle:
            raise wire.ParseError("unexpected APPEND arguments")
        message = mime.without_nul(message)
        if len(message) > self.backend.append_limit:
            raise Refused("Message too large", "TOOBIG")
        sel = self.selected
        claim = sel is not None and sel.name == name and not self.rev2  # this session reports it as \\Recent
        try:
            uidvalidity, uid = await account.append(
                name, message, [f for f in flags if f != "\\Recent"], date, claim=claim
            )
        except NotFound:
            raise Refused("Mailbox doesn't exist: " + name[:100], "TRYCREATE") from None
        except Exception as exc:
            if getattr(exc, "kind", None) == Kind.PAYLOAD_TOO_LARGE:
                raise Refused("Message too large", "TOOBIG") from None
            raise
        if sel is not None and sel is self.selected and sel.name == name:
            if claim:
                sel.claimed.add(uid)
            sel.dirty = True
        await self.done("APPEND completed", f"APPENDUID {uidvalidity} {uid}")

    # -- LIST / LSUB ------------------------------------------------------------------------------------------

    async def cmd_LSUB(self, args: list[bytes]) -> None:
        account = self.need_account()
        tokens = wire.tokenize(args)
        if len(tokens) != 2:
            raise wire.ParseError("LSUB expects a reference and a pattern")
        rx = names.pattern(self.box_name(tokens[0], "reference"), self.box_name(tokens[1], "pattern"))
        subscribed = sorted(b.name for b in await account.mailboxes() if b.subscribed)
        noselect: set[str] = set()
        for name in subscribed:
            if rx.match(name):
                self.queue(b'* LSUB () "/" ' + self.wire_box(name))
            else:  # RFC 3501 §6.3.9: a matching superior of a subscribed name is listed \Noselect
                noselect.update(p for p in names.parents(name) if rx.match(p) and p not in subscribed)
        for name in sorted(noselect):
            self.queue(b'* LSUB (\\Noselect) "/" ' + self.wire_box(name))
        await self.done()

    async def cmd_LIST(self, args: list[bytes]) -> None:
        from portside.imap.listing import run_list

        await run_list(self, self.need_account(), wire.tokenize(args))
        await self.done()
