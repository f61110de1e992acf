"""One mapping per protocol from the error vocabulary (`portside.errors.Kind`) to that protocol's wire form.

Every table here is total: a unit test fails when a kind is added without a line in each of them. A
protocol edge does not pick a status, reply or close code itself; it raises or names a kind and asks this
module (a unit test keeps WebSocket close-code literals out of every other module).

- HTTP, JSON:API (`jsonapi_error`): `{"errors": [{status, code, title, detail, source}]}`; `code` is the
  kind's value (JSON:API's own member, which Daptin clients ignore). Retry-After on 429/503 when known.
- HTTP, Daptin's action shape (`action_error`): one `client.notify` response `{type: "error", title,
  message, code}`: Daptin's three keys unchanged (title `failed` where Daptin says so) plus `code`.
- WebSocket close codes (`WS_CLOSE`, `ws_close_code`) for `/live` and Yjs: RFC 6455 codes only (1001
  going away, 1003 unsupported data, 1007 bad data, 1008 policy, 1009 too big, 1011 server error, 1013
  try again later); the reason text carries the detail. A WebSocket upgrade refused before the handshake is
  an HTTP status with a plain-text reason and the kind's code in the `Portside-Error-Code` header
  (`ERROR_CODE_HEADER`); JSON frames that refuse a request (/live responses) carry the kind as `code`.

Hooks for the protocols that come next: each adds one total table `Kind -> reply` here, next to these, and
its edge calls one function built on it. What they will say (decided now so the vocabulary fits them):
- SMTP (`SMTP_REPLY`): reply code + enhanced status, e.g. login_failed 535 5.7.8, rate_limited 454 4.7.0,
  unavailable 421 4.3.0, not_found 550 5.1.1, payload_too_large 552 5.3.4, forbidden 550 5.7.1,
  bad_request 501 5.5.4, internal 451 4.3.0.
- IMAP (`IMAP_REPLY`): `NO` with a response code for refusals (login_failed `[AUTHENTICATIONFAILED]`,
  forbidden `[NOPERM]`, not_found `[NONEXISTENT]`, unique_violation `[ALREADYEXISTS]`, payload_too_large
  `[TOOBIG]`, rate_limited/unavailable `[UNAVAILABLE]`, internal `[SERVERBUG]`), `BAD` for bad_request and
  its refinements, `BYE` for going_away and too_slow.
- FTP (`FTP_REPLY`): login_failed 530, forbidden 550, not_found 550, payload_too_large 552, bad_request 501,
  method_not_allowed 502, unavailable/going_away 421, internal 451.
- DAV (`DAV_ERROR`): the HTTP status of the kind plus, where RFC 4791/4918 define one, a precondition
  element in the `DAV:error` body (e.g. unique_violation -> `no-uid-conflict`, payload_too_large ->
  `max-resource-size`, validation_failed -> `valid-calendar-data`/`valid-address-data`).
"""

from __future__ import annotations

from typing import Any

from portside.errors import Kind, PortsideError

# -- HTTP --------------------------------------------------------------------------------------------------

RETRY_STATUSES = frozenset({429, 503})


def jsonapi_error(exc: PortsideError) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """(status, JSON:API error document, headers) for an error."""
    obj: dict[str, Any] = {"status": str(exc.status), "code": exc.code, "title": exc.title, "detail": exc.detail}
    source = {k: v for k, v in (("pointer", exc.pointer), ("parameter", exc.parameter)) if v}
    if source:
        obj["source"] = source
    return exc.status, {"errors": [obj]}, retry_headers(exc)


def action_error(exc: PortsideError) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """(status, `client.notify` attributes, headers): Daptin's action error shape, plus `code`."""
    title = "failed" if exc.status in (401, 429) else exc.title  # Daptin's title for these
    attrs = {"type": "error", "title": title, "message": exc.detail, "code": exc.code}
    return exc.status, attrs, retry_headers(exc)


def retry_headers(exc: PortsideError) -> dict[str, str] | None:
    if exc.status not in RETRY_STATUSES:
        return None
    wait = exc.retry_after if exc.retry_after is not None else (60 if exc.status == 429 else None)
    return {"Retry-After": str(wait)} if wait is not None else None


# -- WebSocket -----------------------------------------------------------------------------------------------

GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
BAD_DATA = 1007
POLICY = 1008
TOO_BIG = 1009
SERVER_ERROR = 1011
TRY_AGAIN_LATER = 1013
ERROR_CODE_HEADER = "Portside-Error-Code"  # a refused WebSocket upgrade: the error kind's code

WS_CLOSE: dict[Kind, int] = {
    Kind.BAD_REQUEST: BAD_DATA,
    Kind.VALIDATION_FAILED: BAD_DATA,
    Kind.SCHEMA_INVALID: BAD_DATA,
    Kind.UNSUPPORTED_EXPRESSION: BAD_DATA,
    Kind.UNAUTHORIZED: POLICY,
    Kind.LOGIN_FAILED: POLICY,
    Kind.TOKEN_EXPIRED: POLICY,
    Kind.TOKEN_REVOKED: POLICY,
    Kind.FORBIDDEN: POLICY,
    Kind.NOT_FOUND: POLICY,
    Kind.TABLE_NOT_FOUND: POLICY,
    Kind.ROW_NOT_FOUND: POLICY,
    Kind.METHOD_NOT_ALLOWED: POLICY,
    Kind.CONFLICT: POLICY,
    Kind.UNIQUE_VIOLATION: POLICY,
    Kind.PRECONDITION_FAILED: POLICY,
    Kind.PAYLOAD_TOO_LARGE: TOO_BIG,
    Kind.UNSUPPORTED_MEDIA_TYPE: UNSUPPORTED_DATA,
    Kind.TOO_MANY_REQUESTS: TRY_AGAIN_LATER,
    Kind.RATE_LIMITED: TRY_AGAIN_LATER,
    Kind.INTERNAL: SERVER_ERROR,
    Kind.UPSTREAM_FAILED: SERVER_ERROR,
    Kind.UNAVAILABLE: TRY_AGAIN_LATER,
    Kind.GOING_AWAY: GOING_AWAY,
    Kind.TOO_SLOW: TRY_AGAIN_LATER,
}


def ws_close_code(kind: Kind) -> int:
    """The WebSocket close code a session ends with for `kind`."""
    return WS_CLOSE[kind]


# -- FTP -------------------------------------------------------------------------------------------------------

FTP_REPLY: dict[Kind, int] = {
    Kind.BAD_REQUEST: 501,
    Kind.VALIDATION_FAILED: 501,
    Kind.SCHEMA_INVALID: 501,
    Kind.UNSUPPORTED_EXPRESSION: 501,
    Kind.UNAUTHORIZED: 530,
    Kind.LOGIN_FAILED: 530,
    Kind.TOKEN_EXPIRED: 530,
    Kind.TOKEN_REVOKED: 530,
    Kind.FORBIDDEN: 550,
    Kind.NOT_FOUND: 550,
    Kind.TABLE_NOT_FOUND: 550,
    Kind.ROW_NOT_FOUND: 550,
    Kind.METHOD_NOT_ALLOWED: 502,
    Kind.CONFLICT: 550,
    Kind.PRECONDITION_FAILED: 550,
    Kind.UNIQUE_VIOLATION: 550,
    Kind.PAYLOAD_TOO_LARGE: 552,
    Kind.UNSUPPORTED_MEDIA_TYPE: 504,
    Kind.TOO_MANY_REQUESTS: 421,
    Kind.RATE_LIMITED: 421,
    Kind.INTERNAL: 451,
    Kind.UPSTREAM_FAILED: 451,
    Kind.UNAVAILABLE: 421,
    Kind.GOING_AWAY: 421,
    Kind.TOO_SLOW: 421,
}


def ftp_reply(kind: Kind) -> int:
    """The FTP reply code for `kind`."""
    return FTP_REPLY[kind]


# -- DAV (CalDAV / CardDAV) ------------------------------------------------------------------------------------

# the precondition element (RFC 4791 / 6352 / 4918) a kind names in the `DAV:error` body, if any; the edge
# puts it in the CalDAV or CardDAV namespace by the collection's kind. Status: the kind's HTTP status.
DAV_ERROR: dict[Kind, str | None] = {kind: None for kind in Kind} | {
    Kind.UNIQUE_VIOLATION: "no-uid-conflict",
    Kind.PAYLOAD_TOO_LARGE: "max-resource-size",
}


def dav_error(exc: PortsideError) -> tuple[int, str | None, dict[str, str] | None]:
    """(status, precondition element name or None, headers) for an error on the DAV edge."""
    own = getattr(exc, "precondition", None)
    return exc.status, own if isinstance(own, str) else DAV_ERROR[exc.kind], retry_headers(exc)


# -- SMTP ----------------------------------------------------------------------------------------------------

SMTP_REPLY: dict[Kind, str] = {
    Kind.BAD_REQUEST: "501 5.5.4",
    Kind.VALIDATION_FAILED: "501 5.5.4",
    Kind.SCHEMA_INVALID: "501 5.5.4",
    Kind.UNSUPPORTED_EXPRESSION: "501 5.5.4",
    Kind.UNAUTHORIZED: "530 5.7.0",
    Kind.LOGIN_FAILED: "535 5.7.8",
    Kind.TOKEN_EXPIRED: "535 5.7.8",
    Kind.TOKEN_REVOKED: "535 5.7.8",
    Kind.FORBIDDEN: "550 5.7.1",
    Kind.NOT_FOUND: "550 5.1.1",
    Kind.TABLE_NOT_FOUND: "550 5.1.1",
    Kind.ROW_NOT_FOUND: "550 5.1.1",
    Kind.METHOD_NOT_ALLOWED: "502 5.5.1",
    Kind.CONFLICT: "451 4.3.0",
    Kind.PRECONDITION_FAILED: "554 5.5.0",
    Kind.UNIQUE_VIOLATION: "451 4.3.0",
    Kind.PAYLOAD_TOO_LARGE: "552 5.3.4",
    Kind.UNSUPPORTED_MEDIA_TYPE: "554 5.6.0",
    Kind.TOO_MANY_REQUESTS: "454 4.7.0",
    Kind.RATE_LIMITED: "454 4.7.0",
    Kind.INTERNAL: "451 4.3.0",
    Kind.UPSTREAM_FAILED: "451 4.4.0",
    Kind.UNAVAILABLE: "421 4.3.0",
    Kind.GOING_AWAY: "421 4.3.2",
    Kind.TOO_SLOW: "421 4.4.2",
}


def smtp_reply(exc: PortsideError) -> str:
    """One SMTP reply line for an error: code, enhanced status code, and the error's detail (one line)."""
    detail: str = exc.detail or exc.title
    text = " ".join(detail.split())[:200]  # one line: no CR/LF from a detail can reach the wire
    return f"{SMTP_REPLY[exc.kind]} {text}"


# -- IMAP ----------------------------------------------------------------------------------------------------

IMAP_REPLY: dict[Kind, tuple[str, str | None]] = {
    Kind.BAD_REQUEST: ("BAD", None),
    Kind.VALIDATION_FAILED: ("BAD", None),
    Kind.SCHEMA_INVALID: ("BAD", None),
    Kind.UNSUPPORTED_EXPRESSION: ("BAD", None),
    Kind.UNAUTHORIZED: ("NO", "AUTHENTICATIONFAILED"),
    Kind.LOGIN_FAILED: ("NO", "AUTHENTICATIONFAILED"),
    Kind.TOKEN_EXPIRED: ("NO", "AUTHENTICATIONFAILED"),
    Kind.TOKEN_REVOKED: ("NO", "AUTHENTICATIONFAILED"),
    Kind.FORBIDDEN: ("NO", "NOPERM"),
    Kind.NOT_FOUND: ("NO", "NONEXISTENT"),
    Kind.TABLE_NOT_FOUND: ("NO", "NONEXISTENT"),
    Kind.ROW_NOT_FOUND: ("NO", "NONEXISTENT"),
    Kind.METHOD_NOT_ALLOWED: ("NO", "CANNOT"),
    Kind.CONFLICT: ("NO", "INUSE"),
    Kind.PRECONDITION_FAILED: ("NO", "CANNOT"),
    Kind.UNIQUE_VIOLATION: ("NO", "ALREADYEXISTS"),
    Kind.PAYLOAD_TOO_LARGE: ("NO", "TOOBIG"),
    Kind.UNSUPPORTED_MEDIA_TYPE: ("NO", "CANNOT"),
    Kind.TOO_MANY_REQUESTS: ("NO", "UNAVAILABLE"),
    Kind.RATE_LIMITED: ("NO", "UNAVAILABLE"),
    Kind.INTERNAL: ("NO", "SERVERBUG"),
    Kind.UPSTREAM_FAILED: ("NO", "UNAVAILABLE"),
    Kind.UNAVAILABLE: ("NO", "UNAVAILABLE"),
    Kind.GOING_AWAY: ("BYE", None),
    Kind.TOO_SLOW: ("BYE", None),
}


def imap_reply(kind: Kind) -> tuple[str, str | None]:
    """(status word `NO`/`BAD`/`BYE`, response code or None) an IMAP command ends with for `kind`."""
    return IMAP_REPLY[kind]
