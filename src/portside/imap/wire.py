"""IMAP command syntax: reading one command (line plus literals) off a stream, and tokenising it.

`read_command` returns the command as *segments*: the text lines with the literal payloads between them
(`[line, literal, line, literal, line]`). A synchronising literal `{n}` is answered with a continuation
request before its bytes are read, a non-synchronising one `{n+}` (LITERAL+) is read at once. Sizes are
bounded: a line longer than `max_line` and a literal larger than `max_literal` are refused (`TooLong`)
after the rest of the command has been skipped, so the session continues with the next command.

`tokenize(segments)` turns the arguments into values: `Atom` (str), `bytes` for quoted strings and
literals, nested `list` for parenthesised lists. An atom that contains `[` runs to its matching `]`
(`BODY[HEADER.FIELDS (A B)]<0.10>` is one atom); the FETCH code takes the section apart.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeAlias, Union

MAX_LINE = 64 * 1024
MAX_LITERALS = 64 * 1024 * 1024  # all literals of one command together
LITERAL_AT_END = re.compile(rb"(~?)\{(\d{1,12})(\+?)\}\r?\n\Z")


class ParseError(Exception):
    """The command is malformed: tagged BAD, the session continues."""


class TooLong(ParseError):
    """A line or literal over the limit (the whole command has been consumed)."""

    def __init__(self, message: str, tag: str | None, *, literal: bool = False):
        super().__init__(message)
        self.tag = tag
        self.literal = literal


class Closed(Exception):
    """The peer closed the connection (or it must be closed: unrecoverable framing)."""


class Atom(str):
    """An unquoted token (atom, number, sequence set, flag, NIL)."""

    __slots__ = ()


Token: TypeAlias = Union[Atom, bytes, list["Token"]]  # noqa: UP007 (a recursive alias needs Union)


@dataclass
class Literal:
    size: int
    sync: bool
    binary: bool


def literal_at_end(line: bytes) -> Literal | None:
    m = LITERAL_AT_END.search(line)
    if m is None:
        return None
    return Literal(int(m.group(2)), not m.group(3), bool(m.group(1)))


def _tag_of(line: bytes) -> str | None:
    head = line.split(b" ", 1)[0].strip()
    try:
        tag = head.decode("ascii")
    except UnicodeDecodeError:
        return None
    return tag if tag and is_tag(tag) else None


def is_tag(tag: str) -> bool:
    return all(33 <= ord(c) < 127 and c not in '(){%*"\\+' for c in tag)


async def read_line(reader: asyncio.StreamReader, max_line: int) -> bytes:
    """One line with its line ending; TooLong after skipping the rest of an over-long line."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        raise Closed() from exc
    except asyncio.LimitOverrunError as exc:
        head = await reader.readexactly(exc.consumed)
        while True:
            try:
                await reader.readuntil(b"\n")
                break
            except asyncio.LimitOverrunError as more:
                await reader.readexactly(more.consumed)
            except asyncio.IncompleteReadError as eof:
                raise Closed() from eof
        raise TooLong("line too long", _tag_of(head)) from None
    if len(line) > max_line:
        raise TooLong("line too long", _tag_of(line))
    return line


async def skip(reader: asyncio.StreamReader, size: int) -> None:
    while size > 0:
        chunk = await reader.read(min(size, 65536))
        if not chunk:
            raise Closed()
        size -= len(chunk)


async def read_command(
    reader: asyncio.StreamReader,
    go_ahead: Callable[[], Awaitable[None]],
    *,
    max_line: int = MAX_LINE,
    max_literal: int = MAX_LITERALS,
) -> list[bytes]:
    """One complete command as segments (see the module text). Raises Closed at end of stream."""
    segments: list[bytes] = []
    total = 0
    while True:
        line = await read_line(reader, max_line)
        segments.append(line)
        lit = literal_at_end(line)
        if lit is None:
            return segments
        total += lit.size
        if total > max_literal:
            tag = _tag_of(segments[0])
            if lit.sync:  # the client waits for "+": refuse now, it sends nothing more of this command
                raise TooLong("literal too large", tag, literal=True)
            if lit.size > 4 * max_literal:  # not worth reading through
                raise Closed()
            await skip(reader, lit.size)
            await _skip_rest(reader, max_line)
            raise TooLong("literal too large", tag, literal=True)
        if lit.sync:
            await go_ahead()
        try:
            segments.append(await reader.readexactly(lit.size))
        except asyncio.IncompleteReadError as exc:
            raise Closed() from exc


async def _skip_rest(reader: asyncio.StreamReader, max_line: int) -> None:
    """Consume the remaining lines (and non-synchronising literals) of a refused command."""
    while True:
        line = await read_line(reader, max_line)
        lit = literal_at_end(line)
        if lit is None:
            return
        if lit.sync:
            return  # never answered with "+": the client will not send it
        await skip(reader, lit.size)


# -- tokenising ------------------------------------------------------------------------------------------

_DELIMS = b' ()"{'


class _Cursor:
    def __init__(self, segments: list[bytes]):
        self.segments = segments
        self.index = 0
        self.text = self._strip(segments[0]) if segments else b""
        self.pos = 0

    @staticmethod
    def _strip(line: bytes) -> bytes:
        return line[:-2] if line.endswith(b"\r\n") else line[:-1] if line.endswith(b"\n") else line

    def at_end(self) -> bool:
        return self.pos >= len(self.text) and self.index + 1 >= len(self.segments)

    def take_literal(self) -> bytes:
        """At a `{n}` ending this line: the literal's bytes; the cursor moves to the next line."""
        if self.index + 1 >= len(self.segments):
            raise ParseError("literal without data")
        data = self.segments[self.index + 1]
        self.index += 2
        self.text = self._strip(self.segments[self.index]) if self.index < len(self.segments) else b""
        self.pos = 0
        return data


def split_head(segments: list[bytes]) -> tuple[str, str, list[bytes]]:
    """(tag, command name upper-cased, segments of the arguments). ParseError without a tag or name."""
    first = _Cursor._strip(segments[0])
    parts = first.split(b" ", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        tag = _tag_of(first)
        raise TooLong("missing command", tag) if tag else ParseError("missing tag")
    try:
        tag, name = parts[0].decode("ascii"), parts[1].decode("ascii").upper()
    except UnicodeDecodeError:
        raise ParseError("invalid tag or command") from None
    if not is_tag(tag):
        raise ParseError("invalid tag")
    rest = parts[2] if len(parts) > 2 else b""
    if first.endswith(b" ") and len(parts) == 2:
        rest = b""
    tail = segments[0][len(first) :]  # the line ending
    return tag, name, [rest + tail, *segments[1:]]


def tokenize(segments: list[bytes]) -> list[Token]:
    cur = _Cursor(segments)
    stack: list[list[Token]] = [[]]
    while not cur.at_end():
        text, pos = cur.text, cur.pos
        if pos >= len(text):
            raise ParseError("unexpected end of line")
        ch = text[pos]
        if ch == 0x20:
            cur.pos += 1
            continue
        if ch == 0x28:  # (
            stack.append([])
            cur.pos += 1
        elif ch == 0x29:  # )
            if len(stack) == 1:
                raise ParseError("unbalanced parenthesis")
            done = stack.pop()
            stack[-1].append(done)
            cur.pos += 1
        elif ch == 0x22:  # "
            stack[-1].append(_quoted(cur))
        elif ch == 0x7B or (ch == 0x7E and text[pos + 1 : pos + 2] == b"{"):  # literal
            if literal_at_end(text[pos:] + b"\n") is None:
                raise ParseError("invalid literal")
            stack[-1].append(cur.take_literal())
        else:
            stack[-1].append(_atom(cur))
    if len(stack) != 1:
        raise ParseError("unbalanced parenthesis")
    return stack[0]


def _quoted(cur: _Cursor) -> bytes:
    text = cur.text
    out = bytearray()
    i = cur.pos + 1
    while i < len(text):
        c = text[i]
        if c == 0x5C:  # backslash
            if i + 1 >= len(text) or text[i + 1] not in b'"\\':
                raise ParseError("invalid escape in quoted string")
            out.append(text[i + 1])
            i += 2
            continue
        if c == 0x22:
            cur.pos = i + 1
            return bytes(out)
        if c in (0x0D, 0x0A):
            break
        out.append(c)
        i += 1
    raise ParseError("unterminated quoted string")


def _atom(cur: _Cursor) -> Atom:
    text = cur.text
    i = cur.pos
    depth = 0
    while i < len(text):
        c = text[i]
        if c == 0x5B:  # [
            depth += 1
        elif c == 0x5D and depth:
            depth -= 1
        elif depth == 0 and c in _DELIMS:
            break
        elif c < 0x20 or c == 0x7F:
            raise ParseError("control character in atom")
        i += 1
    if depth:  # no closing bracket: `[` was an ordinary character
        i = cur.pos
        while i < len(text) and text[i] not in _DELIMS:
            if text[i] < 0x20 or text[i] == 0x7F:
                raise ParseError("control character in atom")
            i += 1
    raw = text[cur.pos : i]
    cur.pos = i
    try:
        return Atom(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ParseError("invalid UTF-8 in atom") from None


# -- reading argument values -------------------------------------------------------------------------------


def text(token: Token | None, what: str = "argument") -> str:
    """An astring as text (UTF-8)."""
    if isinstance(token, Atom):
        return str(token)
    if isinstance(token, bytes):
        try:
            return token.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(f"{what} is not UTF-8") from None
    raise ParseError(f"{what} expected")


def atom(token: Token | None, what: str = "argument") -> str:
    if not isinstance(token, Atom):
        raise ParseError(f"{what} expected")
    return str(token)


def number(token: Token | None, what: str = "number", *, nz: bool = False, limit: int = 2**63 - 1) -> int:
    if not isinstance(token, Atom) or not token.isascii() or not token.isdigit() or len(token) > 20:
        raise ParseError(f"{what} expected")
    value = int(token)
    if value > limit or (nz and value == 0):
        raise ParseError(f"{what} out of range")
    return value


def parenthesized(token: Token | None, what: str = "list") -> list[Token]:
    if not isinstance(token, list):
        raise ParseError(f"{what} expected")
    return token
