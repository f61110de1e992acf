"""SEARCH keys (RFC 3501 §6.4.4 with CONDSTORE's MODSEQ): parsed once into a predicate over messages.

`parse(tokens)` returns a `Program` whose `match(item)` decides one message; `needs_entity` tells whether
the message text must be loaded (header and body keys). String keys match case-insensitively as
substrings of the decoded (RFC 2047) header values or the decoded text, as the RFC asks.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from portside.imap import seqset
from portside.imap.mime import Entity, address_text
from portside.imap.response import MONTHS
from portside.imap.wire import Atom, ParseError, Token, number, text

ADDRESS_HEADERS = frozenset({"FROM", "TO", "CC", "BCC", "SENDER", "REPLY-TO"})
_DATE = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})\Z")


@dataclass
class Item:
    seq: int
    uid: int
    flags: frozenset[str]
    recent: bool
    internaldate: dt.datetime
    size: int
    modseq: int
    max_seq: int
    max_uid: int
    entity: Entity | None = None


Pred = Callable[[Item], bool]


@dataclass
class Program:
    match: Pred
    needs_entity: bool = False
    modseq: bool = False  # MODSEQ was used: the reply carries (MODSEQ n)
    charset: str = "UTF-8"
    saved: list[int] = field(default_factory=list)


def parse_date(token: Token | None) -> dt.date:
    value = text(token, "date")
    m = _DATE.match(value)
    if m is None or m.group(2).capitalize() not in MONTHS:
        raise ParseError("invalid date")
    try:
        return dt.date(int(m.group(3)), MONTHS.index(m.group(2).capitalize()) + 1, int(m.group(1)))
    except ValueError:
        raise ParseError("invalid date") from None


def _fold(value: str) -> str:
    return value.casefold()


def _flag(name: str) -> Pred:
    return lambda item: name in item.flags


def _no_flag(name: str) -> Pred:
    return lambda item: name not in item.flags


def _header(name: str, needle: str) -> Pred:
    want = _fold(needle)

    def pred(item: Item) -> bool:
        assert item.entity is not None
        values = item.entity.header_values(name)
        if values and name.upper() in ADDRESS_HEADERS:
            values.append(address_text(item.entity, name))
        if not want:
            return bool(values) or name.lower() in {k.lower() for k in item.entity.headers}
        return any(want in _fold(v) for v in values)

    return pred


def _sent_date(item: Item) -> dt.date | None:
    assert item.entity is not None
    value = item.entity.headers.get("Date")
    if value is None:
        return None
    try:
        return email.utils.parsedate_to_datetime(str(value)).date()
    except (TypeError, ValueError, IndexError):
        return None


def _internal_date(item: Item) -> dt.date:
    return item.internaldate.date()


class _Parser:
    def __init__(self, tokens: list[Token], saved: frozenset[int] = frozenset()):
        self.tokens = tokens
        self.saved = saved  # UIDs of the saved search result (`$`, RFC 5182)
        self.pos = 0
        self.needs_entity = False
        self.modseq = False

    def next(self, what: str = "search key") -> Token:
        if self.pos >= len(self.tokens):
            raise ParseError(f"{what} expected")
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def program(self) -> Pred:
        preds = [self.key()]
        while self.pos < len(self.tokens):
            preds.append(self.key())
        return _all(preds)

    def key(self) -> Pred:
        tok = self.next()
        if isinstance(tok, list):
            sub = _Parser(tok, self.saved)
            if not tok:
                raise ParseError("empty search list")
            pred = sub.program()
            self.needs_entity |= sub.needs_entity
            self.modseq |= sub.modseq
            return pred
        if not isinstance(tok, Atom):
            raise ParseError("search key expected")
        name = tok.upper()
        if name == "$":
            saved = self.saved
            return lambda i: i.uid in saved
        simple = _SIMPLE.get(name)
        if simple is not None:
            return simple
        if name in ("BCC", "CC", "FROM", "SUBJECT", "TO"):
            self.needs_entity = True
            return _header(name, text(self.next(), "string"))
        if name == "HEADER":
            field_name = text(self.next(), "header name")
            self.needs_entity = True
            return _header(field_name, text(self.next(), "string"))
        if name in ("BODY", "TEXT"):
            want = _fold(text(self.next(), "string"))
            self.needs_entity = True
            whole = name == "TEXT"

            def body(item: Item) -> bool:
                assert item.entity is not None
                hay = item.entity.all_text() if whole else item.entity.text()
                return want in _fold(hay)

            return body
        if name in ("KEYWORD", "UNKEYWORD"):
            kw = text(self.next(), "keyword")
            return _flag(kw) if name == "KEYWORD" else _no_flag(kw)
        if name in ("BEFORE", "ON", "SINCE"):
            day = parse_date(self.next())
            return _date_test(name, day, _internal_date)
        if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            day = parse_date(self.next())
            self.needs_entity = True
            return _date_test(name[4:], day, _sent_date)
        if name in ("LARGER", "SMALLER"):
            n = number(self.next(), "size")
            return (lambda i: i.size > n) if name == "LARGER" else (lambda i: i.size < n)
        if name == "NOT":
            inner = self.key()
            return lambda i: not inner(i)
        if name == "OR":
            a, b = self.key(), self.key()
            return lambda i: a(i) or b(i)
        if name == "UID":
            given = text(self.next(), "UID set")
            if given == "$":
                saved = self.saved
                return lambda i: i.uid in saved
            uids = seqset.parse(given)
            return lambda i: uids.contains(i.uid, i.max_uid)
        if name == "MODSEQ":
            self.modseq = True
            tok = self.next("mod-sequence")
            if isinstance(tok, bytes):  # entry name and type: both ignored (one modseq per message here)
                self.next("entry type")
                tok = self.next("mod-sequence")
            floor = number(tok, "mod-sequence")
            return lambda i: i.modseq >= floor
        if seqset.is_set(tok):
            seqs = seqset.parse(tok)
            return lambda i: seqs.contains(i.seq, i.max_seq)
        raise ParseError(f"unknown search key {name[:40]}")


def _date_test(op: str, day: dt.date, get: Callable[[Item], dt.date | None]) -> Pred:
    def pred(item: Item) -> bool:
        value = get(item)
        if value is None:
            return False
        return value < day if op == "BEFORE" else value == day if op == "ON" else value >= day

    return pred


def _all(preds: list[Pred]) -> Pred:
    if len(preds) == 1:
        return preds[0]
    return lambda i: all(p(i) for p in preds)


_SIMPLE: dict[str, Pred] = {
    "ALL": lambda i: True,
    "ANSWERED": _flag("\\Answered"),
    "DELETED": _flag("\\Deleted"),
    "DRAFT": _flag("\\Draft"),
    "FLAGGED": _flag("\\Flagged"),
    "SEEN": _flag("\\Seen"),
    "UNANSWERED": _no_flag("\\Answered"),
    "UNDELETED": _no_flag("\\Deleted"),
    "UNDRAFT": _no_flag("\\Draft"),
    "UNFLAGGED": _no_flag("\\Flagged"),
    "UNSEEN": _no_flag("\\Seen"),
    "RECENT": lambda i: i.recent,
    "OLD": lambda i: not i.recent,
    "NEW": lambda i: i.recent and "\\Seen" not in i.flags,
}


def parse(tokens: list[Token], saved: frozenset[int] = frozenset()) -> Program:
    """A search program from the arguments after SEARCH (an optional `CHARSET name` first)."""
    charset = "UTF-8"
    if len(tokens) >= 2 and isinstance(tokens[0], Atom) and tokens[0].upper() == "CHARSET":
        charset = text(tokens[1], "charset").upper()
        if charset not in ("UTF-8", "US-ASCII"):
            raise BadCharset()
        tokens = tokens[2:]
    parser = _Parser(tokens, saved)
    pred = parser.program()
    return Program(pred, parser.needs_entity, parser.modseq, charset)


class BadCharset(ParseError):
    """An unsupported CHARSET: `NO [BADCHARSET (UTF-8 US-ASCII)]`."""
