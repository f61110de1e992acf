"""The error vocabulary and its wire mappings are total and consistent, and no code recognises an error by its
message text or writes a WebSocket close code of its own."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

from portside import errors
from portside.errors import Kind, PortsideError, kind_for_status
from portside.tools import wire_errors
from portside.tools.wire_errors import IMAP_REPLY, WS_CLOSE, action_error, imap_reply, jsonapi_error, ws_close_code

FSTRING_MIDDLE = getattr(tokenize, "FSTRING_MIDDLE", -1)  # Python 3.12+: the literal parts of an f-string
SRC = Path(__file__).resolve().parents[2] / "src" / "portside"

EXC = r"(?:exc|err|error|e|ex|exception)"
MESSAGE_MATCHING = [
    re.compile(r"^(?!.*\bfor\b[^:]*\bin\s+str\().*\bin\s+str\("),  # "text" in str(exc) (not: for c in str(x))
    re.compile(rf"\bstr\(\s*{EXC}\b[^)]*\)\s*\.\s*(?:startswith|endswith|lower|upper|casefold|find|index|count|split)"),
    re.compile(r"\.args\b"),  # exc.args[0], exc.args == (...): the message (for a few drivers a code: ALLOWED)
    re.compile(rf"\b(?:str|repr|format)\(\s*{EXC}\b[^)]*\)\s*(?:==|!=|\bin\b|\[)"),  # str(exc) == "..."
    re.compile(rf"(?:==|!=|\bin)\s*(?:str|repr)\(\s*{EXC}\b"),  # "..." == str(exc), "x" in repr(exc)
    re.compile(rf"getattr\(\s*{EXC}\s*,\s*[\"'](?:message|msg|detail|args)[\"']"),
    re.compile(rf"\b{EXC}\.(?:detail|message|msg|title)\s*(?:==|!=|\.\s*(?:startswith|endswith|lower|find))"),
    re.compile(rf"\bin\s+{EXC}\.(?:detail|message|msg|title)\b"),
    re.compile(rf"\bstr\(\s*{EXC}\.orig\s*\)"),
    re.compile(rf"\bre\.\w+\(.*(?:str\(\s*{EXC}\s*\)|\b{EXC}\.(?:detail|message))"),
]
# (file, line text) pairs that are allowed, each with its reason
ALLOWED = {
    # asyncmy/PyMySQL carry the MySQL error *number* (an int) as args[0]; it is type-checked, never text
    ("core/db_errors.py", "errno = driver.args[0] if driver.args else None"),
}
CLOSE_LITERAL = [
    re.compile(r"\b(?:close|close_later)\(\s*\d{4}\b"),
    re.compile(r"\bCLOSE_\w+\s*(?::\s*\w+\s*)?=\s*\d{4}\b"),
]


def code_lines(text: str) -> list[str]:
    """The source's lines with comments removed and every string literal emptied (docstrings say anything)."""
    lines = text.splitlines()
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    for tok in reversed(tokens):
        if tok.type not in (tokenize.STRING, tokenize.COMMENT, FSTRING_MIDDLE):
            continue
        if tok.type == tokenize.STRING and "f" in tok.string.split(tok.string[-1], 1)[0].lower():
            continue  # an f-string (Python 3.11: one token): its {expressions} are code
        (r1, c1), (r2, c2) = tok.start, tok.end
        keep = "" if tok.type != tokenize.STRING else '""'
        if r1 == r2:
            lines[r1 - 1] = lines[r1 - 1][:c1] + keep + lines[r1 - 1][c2:]
        else:
            lines[r1 - 1] = lines[r1 - 1][:c1] + keep
            for r in range(r1, r2 - 1):
                lines[r] = ""
            lines[r2 - 1] = lines[r2 - 1][c2:]
    return lines


def offending(patterns: list[re.Pattern[str]], allowed: set[tuple[str, str]], src: Path = SRC) -> list[str]:
    found = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        text = path.read_text()
        for n, (line, code) in enumerate(zip(text.splitlines(), code_lines(text), strict=True), 1):
            if any(p.search(code) for p in patterns) and (rel, line.strip()) not in allowed:
                found.append(f"{rel}:{n}: {line.strip()}")
    return found


def test_no_error_is_recognised_by_its_message_text() -> None:
    assert offending(MESSAGE_MATCHING, ALLOWED) == []


def test_the_message_matching_check_catches_what_it_is_for() -> None:
    samples = [
        'raise (NotFound if "not found" in str(exc) else Forbidden)(x)',
        'if "locked" not in str(exc) and "busy" not in str(exc):',
        'if str(exc).startswith("topic not found"):',
        "text = str(exc.orig).lower()",
        'if err.detail == "token expired":',
        'if "expired" in e.message:',
        "missing {exc.args[0]!r}",
        're.search("duplicate", str(exc))',
        'if exc.args == ("database is locked",):',
        'if str(e) == "token expired":',
        'if "busy" in repr(err):',
        'msg = getattr(exc, "message", "")',
    ]
    for sample in samples:
        assert any(p.search(sample) for p in MESSAGE_MATCHING), sample


def test_websocket_close_codes_are_written_in_one_place() -> None:
    found = [f for f in offending(CLOSE_LITERAL, set()) if not f.startswith("tools/wire_errors.py:")]
    assert found == []
    assert any(p.search("CLOSE_POLICY = 1008") for p in CLOSE_LITERAL)
    assert any(p.search("await ws.close(1011, 'x')") for p in CLOSE_LITERAL)


def test_every_kind_has_a_status_a_stable_code_and_a_line_in_every_mapping() -> None:
    assert set(WS_CLOSE) == set(Kind)
    assert set(IMAP_REPLY) == set(Kind)
    assert len({k.value for k in Kind}) == len(Kind)
    for kind in Kind:
        assert re.fullmatch(r"[a-z][a-z_]+", kind.value), kind
        assert 400 <= kind.status < 600
        assert kind.general.status == kind.status and kind.general.general is kind.general
        assert kind_for_status(kind.status) is kind.general
        assert ws_close_code(kind) in (1001, 1003, 1007, 1008, 1009, 1011, 1013)
        status, code = imap_reply(kind)
        assert status in ("NO", "BAD", "BYE") and (code is None or re.fullmatch(r"[A-Z-]+", code)), kind
    # future protocol tables follow the same rule: total over the vocabulary
    for name in ("SMTP_REPLY", "IMAP_REPLY", "FTP_REPLY", "DAV_ERROR"):
        table = getattr(wire_errors, name, None)
        assert table is None or set(table) == set(Kind), name


@pytest.mark.parametrize("kind", list(Kind))
def test_each_kind_on_the_http_wires(kind: Kind) -> None:
    exc = PortsideError("what happened", kind=kind, pointer="/data/attributes/x")
    status, doc, headers = jsonapi_error(exc)
    assert status == kind.status
    assert doc == {
        "errors": [
            {
                "status": str(kind.status),
                "code": kind.value,
                "title": exc.title,
                "detail": "what happened",
                "source": {"pointer": "/data/attributes/x"},
            }
        ]
    }
    status, attrs, _ = action_error(exc)
    assert status == kind.status
    assert set(attrs) == {"type", "title", "message", "code"} and attrs["code"] == kind.value
    assert attrs["type"] == "error" and attrs["message"] == "what happened"
    assert (headers is not None) == (kind.status == 429)  # 429 always says how long; 503 when it knows


def test_classes_default_kinds_and_finer_kinds() -> None:
    assert errors.NotFound("x").code == "not_found" and errors.NotFound("x").status == 404
    finer = errors.NotFound("x", kind=Kind.ROW_NOT_FOUND)
    assert finer.code == "row_not_found" and finer.status == 404 and finer.title == "Not Found"
    assert errors.SchemaError("bad").title == "Invalid schema" and errors.SchemaError("bad").status == 400
    assert errors.TooManyRequests().retry_after == 60
    busy = errors.Unavailable("busy", retry_after=1)
    assert jsonapi_error(busy)[2] == {"Retry-After": "1"}
    assert jsonapi_error(errors.Unavailable("down"))[2] is None
    assert kind_for_status(418) is Kind.BAD_REQUEST and kind_for_status(599) is Kind.INTERNAL
