"""FETCH and UID FETCH: every RFC 3501 item, BINARY/BINARY.SIZE (RFC 3516), MODSEQ and the CHANGEDSINCE /
VANISHED modifiers (RFC 7162). A non-PEEK body fetch in a read-write mailbox sets \\Seen."""

from __future__ import annotations

import re
from dataclasses import dataclass

from portside.imap import mime, parsed, seqset, wire
from portside.imap.base import Refused, SessionBase
from portside.imap.response import internaldate, literal, sequence_set, string
from portside.imap.selected import Selected

MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
SIMPLE = {"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY", "MODSEQ"}
_KINDS = "|".join(re.escape(k) for k in ("BODY.PEEK", "BODY", "BINARY.PEEK", "BINARY.SIZE", "BINARY"))
_SECTION = re.compile(rf"({_KINDS})\[([^\]]*)\](?:<(\d{{1,10}})(?:\.(\d{{1,10}}))?>)?\Z", re.I)
_PART = re.compile(r"(\d+(?:\.\d+)*)?(?:\.?(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME))?(.*)\Z", re.I | re.S)
PREFETCH = 100  # messages whose raw bytes are read from the store in one go
SEQUENTIAL = 64  # bodies read ahead when single-message FETCHes walk the mailbox in order...
AHEAD_BYTES = 4 * 1024 * 1024  # ...and at most this many bytes of them (as the chunks of a FETCH of many)
RFC822_ALIASES = {"RFC822": ("BODY", ""), "RFC822.HEADER": ("BODY.PEEK", "HEADER"), "RFC822.TEXT": ("BODY", "TEXT")}


@dataclass
class Section:
    kind: str  # BODY, BINARY, BINARY.SIZE, or an RFC822 alias name
    peek: bool
    path: list[int]
    what: str  # "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: list[str]
    origin: int | None
    length: int | None
    label: str  # how the response names it

    def sets_seen(self) -> bool:
        return not self.peek and self.kind != "BINARY.SIZE"


def parse_section(item: str) -> Section:
    alias = RFC822_ALIASES.get(item.upper())
    if alias is not None:
        return Section(item.upper(), alias[0] == "BODY.PEEK", [], alias[1], [], None, None, item.upper())
    m = _SECTION.match(item)
    if m is None:
        raise wire.ParseError(f"invalid fetch item {item[:40]}")
    kind = m.group(1).upper()
    spec = m.group(2)
    pm = _PART.match(spec)
    assert pm is not None
    path = [int(p) for p in pm.group(1).split(".")] if pm.group(1) else []
    if any(p == 0 for p in path):
        raise wire.ParseError("invalid section part")
    what = (pm.group(2) or "").upper()
    tail = pm.group(3).strip()
    fields: list[str] = []
    if what.startswith("HEADER.FIELDS"):
        toks = wire.tokenize([tail.encode() + b"\r\n"]) if tail else []
        if len(toks) != 1 or not isinstance(toks[0], list) or not toks[0]:
            raise wire.ParseError("header field list expected")
        fields = [wire.text(t, "header field name") for t in toks[0]]
    elif tail:
        raise wire.ParseError("invalid section")
    if what == "MIME" and not path:
        raise wire.ParseError("MIME needs a part number")
    if kind.startswith("BINARY") and what:
        raise wire.ParseError("BINARY takes part numbers only")
    origin = int(m.group(3)) if m.group(3) is not None else None
    length = int(m.group(4)) if m.group(4) is not None else None
    if m.group(3) is not None and m.group(4) is None:
        raise wire.ParseError("partial needs a length")
    if kind == "BINARY.SIZE" and origin is not None:
        raise wire.ParseError("BINARY.SIZE takes no partial")
    base = kind.replace(".PEEK", "")
    spec_label = ".".join(str(p) for p in path)
    if what:
        spec_label = f"{spec_label}.{what}" if spec_label else what
    if fields:
        spec_label += " (" + " ".join(f.upper() for f in fields) + ")"
    label = f"{base}[{spec_label}]" + (f"<{origin}>" if origin is not None else "")
    return Section(base, kind.endswith(".PEEK"), path, what, fields, origin, length, label)


def section_bytes(entity: mime.Entity, sec: Section) -> bytes | None:
    """The bytes a section names (None: the part does not exist; BINARY of an unknown encoding raises)."""
    if not sec.path:
        target: mime.Entity | None = entity
    else:
        target = entity.part(sec.path)
    if target is None:
        return None
    if sec.kind in ("BINARY", "BINARY.SIZE"):
        if not sec.path:
            return entity.raw
        data = target.decoded()
        if data is None:
            raise Refused("Unknown content transfer encoding", "UNKNOWN-CTE")
        return data
    if sec.what == "MIME":
        return target.header if sec.path else None
    if sec.what in ("HEADER", "TEXT", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        msg = target
        if sec.path:
            if not target.is_message:
                return b""
            msg = target.children[0]
        if sec.what == "TEXT":
            return msg.body
        if sec.what == "HEADER":
            return msg.header
        return mime.header_fields(msg.header, sec.fields, exclude=sec.what.endswith(".NOT"))
    return target.body if sec.path else entity.raw


def _within(sel: Selected, uids: list[int]) -> list[int]:
    """The first of `uids` whose messages hold at most AHEAD_BYTES together (the rest are read one by one)."""
    total = 0
    for n, uid in enumerate(uids):
        info = sel.info.get(uid)
        total += info.size if info is not None else 0
        if total > AHEAD_BYTES:
            return uids[:n]
    return uids


class FetchCommand(SessionBase):
    def fetch_items(self, tokens: list[wire.Token]) -> tuple[list[str], list[Section]]:
        raw_items: list[wire.Token]
        tok = tokens[0]
        if isinstance(tok, list):
            raw_items = tok
        else:
            name = wire.atom(tok, "fetch item").upper()
            raw_items = [wire.Atom(m) for m in MACROS[name]] if name in MACROS else [tok]
        simple: list[str] = []
        sections: list[Section] = []
        for t in raw_items:
            item = wire.atom(t, "fetch item")
            upper = item.upper()
            if upper in SIMPLE:
                simple.append(upper)
            elif "[" in item or upper in RFC822_ALIASES:
                sections.append(parse_section(item))
            else:
                raise wire.ParseError(f"invalid fetch item {item[:40]}")
        return simple, sections

    async def cmd_FETCH(self, args: list[bytes]) -> None:
        sel = self.need_selected()
        account = self.need_account()
        tokens = wire.tokenize(args)
        if len(tokens) not in (2, 3):
            raise wire.ParseError("FETCH expects a set and items")
        uids = self.numbers(sel, tokens[0])
        simple, sections = self.fetch_items(tokens[1:2])
        changed_since: int | None = None
        vanished = False
        if len(tokens) == 3:
            mods = wire.parenthesized(tokens[2], "fetch modifiers")
            i = 0
            while i < len(mods):
                key = wire.atom(mods[i]).upper()
                if key == "CHANGEDSINCE" and i + 1 < len(mods):
                    changed_since = wire.number(mods[i + 1], "mod-sequence")
                    i += 2
                elif key == "VANISHED" and self.uid and self.qresync:
                    vanished = True
                    i += 1
                else:
                    raise wire.ParseError("unknown fetch modifier")
            if vanished and changed_since is None:
                raise wire.ParseError("VANISHED needs CHANGEDSINCE")
            self.enable_condstore()
        if "MODSEQ" in simple:
            self.enable_condstore()
        if self.uid and "UID" not in simple:
            simple.insert(0, "UID")
        if (self.condstore and changed_since is not None) and "MODSEQ" not in simple:
            simple.append("MODSEQ")
        if vanished and changed_since is not None:
            changes = await account.changes(sel.name, changed_since)
            spec = seqset.parse(wire.atom(tokens[0]))
            top = max(sel.uids[-1] if sel.uids else 0, sel.mailbox.uidnext - 1)
            gone = [u for u in changes.vanished if spec.contains(u, top)]
            if gone:
                self.queue(b"* VANISHED (EARLIER) " + sequence_set(gone).encode())
        seen_now: list[int] = []
        if not sel.readonly and any(s.sets_seen() for s in sections):
            unseen = [u for u in uids if u in sel.info and "\\Seen" not in sel.info[u].flags and u not in sel.gone]
            if unseen:
                result = await account.store(sel.name, unseen, "add", ["\\Seen"], None)
                sel.update(result.changed)
                seen_now = [m.uid for m in result.changed]
        seen_set = set(seen_now)
        wanted = [u for u in uids if u in sel.info and (changed_since is None or sel.info[u].modseq > changed_since)]
        needs_body = bool(sections) or any(s in parsed.ITEMS for s in simple)
        if needs_body and len(wanted) == 1:
            seq = sel.seq_of(wanted[0]) or 0
            if not seq or seq != self.last_fetched + 1:
                self.read_ahead = 0
            elif seq > self.read_ahead:
                # one message after the one fetched last (mbsync fetches a mailbox a UID per command, pipelined):
                # read the bodies of the next ones in the same query
                ahead = _within(sel, sel.uids[seq - 1 : seq - 1 + SEQUENTIAL])
                await account.prefetch(sel.name, ahead)
                self.read_ahead = seq - 1 + len(ahead)
            self.last_fetched = seq
        for start in range(0, len(wanted), PREFETCH):
            chunk = wanted[start : start + PREFETCH]
            if needs_body and len(chunk) > 1:
                await account.prefetch(sel.name, _within(sel, chunk))  # one query per chunk, not one per message
            for uid in chunk:
                await self._fetch_one(sel, uid, simple, sections, uid in seen_set)
                await self.maybe_flush()
        await self.done()

    async def _fetch_one(
        self, sel: Selected, uid: int, simple: list[str], sections: list[Section], seen_now: bool
    ) -> None:
        info = sel.info[uid]
        seq = sel.seq_of(uid)
        parts: list[bytes] = []
        raw: bytes | None = None
        entity: mime.Entity | None = None
        key = b""
        needs_body = bool(sections) or any(s in parsed.ITEMS for s in simple)
        if needs_body:
            assert self.account is not None
            raw = await self.account.body(sel.name, uid)
            if raw is None:
                return
        for item in simple:
            if item == "UID":
                parts.append(b"UID %d" % uid)
            elif item == "FLAGS":
                parts.append(sel.flags_item(uid))
            elif item == "INTERNALDATE":
                parts.append(b"INTERNALDATE " + internaldate(info.internaldate))
            elif item == "RFC822.SIZE":
                parts.append(b"RFC822.SIZE %d" % info.size)
            elif item == "MODSEQ":
                parts.append(b"MODSEQ (%d)" % info.modseq)
            else:  # ENVELOPE, BODYSTRUCTURE, BODY: parsed once per distinct message (imap.parsed)
                assert raw is not None
                key = key or parsed.CACHE.key(raw)
                value, entity = parsed.CACHE.item(key, raw, item, entity)
                parts.append(item.encode() + b" " + value)
        for sec in sections:
            assert raw is not None
            if entity is None:
                entity = mime.Entity(raw)
            data = section_bytes(entity, sec)
            if sec.kind == "BINARY.SIZE":
                parts.append(f"{sec.label} {len(data or b'')}".encode())
                continue
            if data is None:
                parts.append(sec.label.encode() + b" NIL")
                continue
            if sec.origin is not None:
                data = data[sec.origin : sec.origin + (sec.length if sec.length is not None else len(data))]
            body = string(data, binary=True) if sec.kind == "BINARY" else literal(data)
            parts.append(sec.label.encode() + b" " + body)
        if seen_now and "FLAGS" not in simple:  # first (after UID), as Dovecot does
            parts.insert(1 if parts and parts[0].startswith(b"UID ") else 0, sel.flags_item(uid))
        if seen_now and self.condstore and "MODSEQ" not in simple:  # RFC 7162 §3.1: a flag change carries it
            parts.append(b"MODSEQ (%d)" % sel.info[uid].modseq)
        self.queue(b"* %d FETCH (" % (seq or 0) + b" ".join(parts) + b")")
