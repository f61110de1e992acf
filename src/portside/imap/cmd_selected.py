"""Selected-state commands: CHECK, CLOSE, EXPUNGE (and UID EXPUNGE), SEARCH (ESEARCH), STORE
(CONDSTORE's UNCHANGEDSINCE), COPY and MOVE (UIDPLUS COPYUID), UID <command>; and IDLE."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from portside.errors import NotFound
from portside.imap import names, search, wire
from portside.imap.base import Bye, Refused, SessionBase
from portside.imap.mime import Entity
from portside.imap.response import ordered_set, sequence_set
from portside.imap.store import StoreMode, canonical_flag

STORE_MODES: dict[str, StoreMode] = {"FLAGS": "set", "+FLAGS": "add", "-FLAGS": "remove"}


class SelectedCommands(SessionBase):
    async def cmd_UID(self, args: list[bytes]) -> None:
        first = args[0].lstrip()
        sub, _, rest = first.partition(b" ")
        name = sub.strip().decode("ascii", "replace").upper()
        if name not in ("FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE"):
            raise wire.ParseError("Unknown UID command")
        self.uid = True
        self.command = name
        if self.selected is not None and self.selected.dirty:
            await self.sync(expunge=True, flush=False)  # UID commands may report expunges first
        method: Callable[[list[bytes]], Awaitable[None]] = getattr(self, f"cmd_{name}")
        await method([rest, *args[1:]])

    async def cmd_CHECK(self, args: list[bytes]) -> None:
        self.need_selected().dirty = True
        await self.done()

    async def cmd_CLOSE(self, args: list[bytes]) -> None:
        sel = self.need_selected()
        account = self.need_account()
        if not sel.readonly:
            with contextlib.suppress(NotFound):
                await account.expunge(sel.name, None)
        sel.close()
        self.selected = None
        self.saved = []
        self.state = "authenticated"
        await self.tagged("OK", "CLOSE completed")

    async def cmd_EXPUNGE(self, args: list[bytes]) -> None:
        sel = self.need_selected()
        account = self.need_account()
        tokens = wire.tokenize(args)
        uids: list[int] | None = None
        if self.uid:
            if len(tokens) != 1:
                raise wire.ParseError("UID EXPUNGE expects a UID set")
            uids = self.numbers(sel, tokens[0])
        elif tokens:
            raise wire.ParseError("EXPUNGE takes no arguments")
        if sel.readonly:
            raise Refused("Mailbox is read-only", "READ-ONLY")
        gone = await account.expunge(sel.name, uids)
        for line in sel.remove(gone, qresync=self.qresync):
            self.queue(b"* " + line)
        sel.dirty = True
        await self.done()

    # -- SEARCH ---------------------------------------------------------------------------------------------

    async def cmd_SEARCH(self, args: list[bytes]) -> None:
        sel = self.need_selected()
        account = self.need_account()
        tokens = wire.tokenize(args)
        returns: list[str] | None = None
        save = False
        if len(tokens) >= 2 and isinstance(tokens[0], wire.Atom) and tokens[0].upper() == "RETURN":
            returns = [wire.atom(t).upper() for t in wire.parenthesized(tokens[1], "return options")]
            if any(r not in ("MIN", "MAX", "ALL", "COUNT", "SAVE") for r in returns):
                raise wire.ParseError("unsupported search return option")
            save = "SAVE" in returns  # SEARCHRES (RFC 5182): keep the result for `$`
            returns = [r for r in returns if r != "SAVE"] or ([] if save else ["ALL"])
            tokens = tokens[2:]
        elif self.rev2:  # IMAP4rev2: ESEARCH replaces the SEARCH response
            returns = ["ALL"]
        if not tokens:
            raise wire.ParseError("search keys expected")
        try:
            program = search.parse(tokens, saved=frozenset(self.saved))
        except search.BadCharset:
            if save:
                self.saved = []
            raise Refused("Unsupported charset", "BADCHARSET (UTF-8 US-ASCII)") from None
        except wire.ParseError:
            if save:
                self.saved = []
            raise
        if program.modseq:
            self.enable_condstore()
        hits: list[int] = []  # UIDs
        max_uid = sel.uids[-1] if sel.uids else 0
        for seq, uid in enumerate(sel.uids, 1):
            if program.needs_entity and (seq - 1) % 100 == 0:
                await account.prefetch(sel.name, sel.uids[seq - 1 : seq + 99])
            info = sel.info[uid]
            item = search.Item(
                seq, uid, info.flags, uid in sel.recent, info.internaldate, info.size, info.modseq,
                len(sel.uids), max_uid,
            )  # fmt: skip
            if program.needs_entity:
                raw = await account.body(sel.name, uid)
                if raw is None:
                    continue
                item.entity = Entity(raw)
            if program.match(item):
                hits.append(uid)
        numbers = hits if self.uid else [sel.seq_of(u) or 0 for u in hits]
        if save:
            self.saved = list(hits)
            if returns and hits and not {"ALL", "COUNT"} & set(returns):  # RFC 5182 §2.4: only MIN/MAX saved
                edges = ([hits[0]] if "MIN" in returns else []) + ([hits[-1]] if "MAX" in returns else [])
                self.saved = sorted(set(edges))
            if not returns:  # SAVE alone: no ESEARCH response (RFC 5182 §2.4)
                await self.done()
                return
        if returns is not None:
            parts = [f'(TAG "{self.tag}")'] + (["UID"] if self.uid else [])
            if numbers:
                if "MIN" in returns:
                    parts.append(f"MIN {min(numbers)}")
                if "MAX" in returns:
                    parts.append(f"MAX {max(numbers)}")
                if "ALL" in returns:
                    parts.append(f"ALL {sequence_set(numbers)}")
            if "COUNT" in returns:
                parts.append(f"COUNT {len(numbers)}")
            if program.modseq and numbers:
                pool = hits
                if not {"ALL", "COUNT"} & set(returns):  # RFC 4731 §3.2: only the messages returned
                    ends = {min(numbers)} if "MIN" in returns else set()
                    ends |= {max(numbers)} if "MAX" in returns else set()
                    pool = [u for u, n in zip(hits, numbers, strict=True) if n in ends]
                parts.append(f"MODSEQ {max(sel.info[u].modseq for u in pool)}")
            await self.untagged("ESEARCH " + " ".join(parts))
        else:
            line = "SEARCH" + "".join(f" {n}" for n in numbers)
            if program.modseq and numbers:
                line += f" (MODSEQ {max(sel.info[u].modseq for u in hits)})"
            await self.untagged(line)
        await self.done()

    # -- STORE ----------------------------------------------------------------------------------------------

    async def cmd_STORE(self, args: list[bytes]) -> None:
        sel = self.need_selected()
        account = self.need_account()
        tokens = wire.tokenize(args)
        if len(tokens) < 3:
            raise wire.ParseError("STORE expects a set, an item and flags")
        uids = self.numbers(sel, tokens[0])
        rest = tokens[1:]
        unchanged: int | None = None
        if isinstance(rest[0], list):
            mods = wire.parenthesized(rest.pop(0))
            if len(mods) != 2 or wire.atom(mods[0]).upper() != "UNCHANGEDSINCE":
                raise wire.ParseError("unknown STORE modifier")
            unchanged = wire.number(mods[1], "mod-sequence")
            self.enable_condstore()
        item = wire.atom(rest[0], "store item").upper()
        silent = item.endswith(".SILENT")
        mode = STORE_MODES.get(item.removesuffix(".SILENT"))
        if mode is None:
            raise wire.ParseError("invalid STORE item")
        values = rest[1:]
        if len(values) == 1 and isinstance(values[0], list):
            values = values[0]
        checked = [canonical_flag(wire.atom(f, "flag")) for f in values]
        if None in checked:
            raise wire.ParseError("invalid system flag")
        flags = [f for f in checked if f is not None and f != "\\Recent"]
        if sel.readonly:
            raise Refused("Mailbox is read-only", "READ-ONLY")
        live = [u for u in uids if u not in sel.gone]
        result = await account.store(sel.name, live, mode, flags, unchanged)
        sel.update(result.changed)
        for line in sel.new_keywords(result.changed):
            self.queue(b"* " + line)
        changed = {m.uid for m in result.changed}
        refused = set(result.modified)
        for uid in live:
            if uid in refused:
                continue
            if silent and not (self.condstore and uid in changed):
                continue
            seq = sel.seq_of(uid)
            if seq is None:
                continue
            parts: list[bytes] = []
            if self.uid or self.qresync:
                parts.append(b"UID %d" % uid)
            if not silent:
                parts.append(sel.flags_item(uid))
            if self.condstore:
                parts.append(b"MODSEQ (%d)" % sel.info[uid].modseq)
            self.queue(b"* %d FETCH (" % seq + b" ".join(parts) + b")")
        if refused:
            nums = sorted(refused) if self.uid else sorted(sel.seq_of(u) or 0 for u in refused)
            await self.done("Conditional STORE failed", f"MODIFIED {sequence_set(nums)}")
        else:
            await self.done()

    # -- COPY / MOVE ----------------------------------------------------------------------------------------

    async def cmd_COPY(self, args: list[bytes]) -> None:
        await self._copy(args, move=False)

    async def cmd_MOVE(self, args: list[bytes]) -> None:
        await self._copy(args, move=True)

    async def _copy(self, args: list[bytes], *, move: bool) -> None:
        sel = self.need_selected()
        account = self.need_account()
        tokens = wire.tokenize(args)
        if len(tokens) != 2:
            raise wire.ParseError("expects a set and a mailbox name")
        uids = [u for u in self.numbers(sel, tokens[0]) if u not in sel.gone]
        target = names.canonical(self.box_name(tokens[1]))
        if move and sel.readonly:
            raise Refused("Mailbox is read-only", "READ-ONLY")
        if not uids:
            await self.done()
            return
        try:
            result = await account.copy(sel.name, uids, target, move=move)
        except NotFound:
            raise Refused("Mailbox doesn't exist: " + target[:100], "TRYCREATE") from None
        code = f"COPYUID {result.uidvalidity} {ordered_set(result.source)} {ordered_set(result.target)}"
        if target == sel.name:
            sel.dirty = True
        if move:
            self.queue(f"* OK [{code}] Moved".encode())
            for line in sel.remove(result.source, qresync=self.qresync):
                self.queue(b"* " + line)
            await self.done()
        else:
            await self.done(None, code)

    # -- IDLE -----------------------------------------------------------------------------------------------

    async def cmd_IDLE(self, args: list[bytes]) -> None:
        if wire.tokenize(args):
            raise wire.ParseError("IDLE takes no arguments")
        await self.sync(expunge=True)
        await self.send(b"+ idling")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.idle_timeout
        reading = asyncio.ensure_future(wire.read_line(self.reader, self.options.max_line))
        try:
            while True:
                sel = self.selected
                waits: set[asyncio.Future[object]] = {reading}  # type: ignore[arg-type]
                waker = asyncio.ensure_future(sel.wake.wait()) if sel is not None else None
                if waker is not None:
                    waits.add(waker)  # type: ignore[arg-type]
                done, _ = await asyncio.wait(
                    waits, timeout=max(0.0, deadline - loop.time()), return_when="FIRST_COMPLETED"
                )
                if waker is not None and not waker.done():
                    waker.cancel()
                if reading in done:
                    line = reading.result()
                    break
                if not done:
                    raise Bye("IDLE timed out")
                await self.sync(expunge=True)
        finally:
            if not reading.done():
                reading.cancel()
        if line.strip().upper() != b"DONE":
            raise wire.ParseError("Expected DONE")
        await self.done("IDLE completed")
