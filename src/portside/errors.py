"""The error vocabulary: every client-visible failure is one `Kind`, whose value is a stable machine code.

A kind knows its HTTP status; the finer kinds (`token_expired`, `row_not_found`, `unique_violation`...)
refine a general one (`unauthorized`, `not_found`, `conflict`) for clients and for other protocols that
need to tell them apart. Code decides by kind, never by message text. The exception classes are the
raising API: each has a default kind, and a raise site names a finer one with `kind=`. How a kind is
written on each wire (JSON:API, Daptin's action shape, WebSocket close codes, later SMTP/IMAP/FTP/DAV)
is decided in one place: `portside.tools.wire_errors`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class Kind(StrEnum):
    """One error kind; the value is the code clients see (JSON:API `code`). Never rename a value."""

    # 400: the request cannot be understood or a value is not acceptable
    BAD_REQUEST = "bad_request"
    VALIDATION_FAILED = "validation_failed"  # a value for a column or attribute is rejected (source.pointer)
    SCHEMA_INVALID = "schema_invalid"  # a schema document is invalid
    UNSUPPORTED_EXPRESSION = "unsupported_expression"  # a Daptin JavaScript outcome expression
    # 401: who the caller is could not be established
    UNAUTHORIZED = "unauthorized"
    LOGIN_FAILED = "login_failed"  # wrong credentials (never says which part)
    TOKEN_EXPIRED = "token_expired"
    TOKEN_REVOKED = "token_revoked"  # the credentials changed after the token was issued
    # 403 / 404 / 405
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    TABLE_NOT_FOUND = "table_not_found"
    ROW_NOT_FOUND = "row_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    # 409: the write conflicts with stored data
    CONFLICT = "conflict"
    UNIQUE_VIOLATION = "unique_violation"
    # 412: a condition of the request (If-Match, If-None-Match) does not hold
    PRECONDITION_FAILED = "precondition_failed"
    # 413 / 415 / 429
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    TOO_MANY_REQUESTS = "too_many_requests"
    RATE_LIMITED = "rate_limited"  # failed sign-ins from this address: wait Retry-After seconds
    # 5xx: not the client's fault
    INTERNAL = "internal"
    UPSTREAM_FAILED = "upstream_failed"  # a server we depend on (ACME CA...) failed
    UNAVAILABLE = "unavailable"  # try again later (busy database, service not running)
    GOING_AWAY = "going_away"  # a long-lived session ends: shutdown, feature disabled, its row deleted
    TOO_SLOW = "too_slow"  # a long-lived session's peer does not read what it is sent

    @property
    def status(self) -> int:
        return _STATUS[self]

    @property
    def general(self) -> Kind:
        """The general kind this one refines (itself when it is general)."""
        return _GENERAL[_STATUS[self]]


_STATUS: dict[Kind, int] = {
    Kind.BAD_REQUEST: 400,
    Kind.VALIDATION_FAILED: 400,
    Kind.SCHEMA_INVALID: 400,
    Kind.UNSUPPORTED_EXPRESSION: 400,
    Kind.UNAUTHORIZED: 401,
    Kind.LOGIN_FAILED: 401,
    Kind.TOKEN_EXPIRED: 401,
    Kind.TOKEN_REVOKED: 401,
    Kind.FORBIDDEN: 403,
    Kind.NOT_FOUND: 404,
    Kind.TABLE_NOT_FOUND: 404,
    Kind.ROW_NOT_FOUND: 404,
    Kind.METHOD_NOT_ALLOWED: 405,
    Kind.CONFLICT: 409,
    Kind.UNIQUE_VIOLATION: 409,
    Kind.PRECONDITION_FAILED: 412,
    Kind.PAYLOAD_TOO_LARGE: 413,
    Kind.UNSUPPORTED_MEDIA_TYPE: 415,
    Kind.TOO_MANY_REQUESTS: 429,
    Kind.RATE_LIMITED: 429,
    Kind.INTERNAL: 500,
    Kind.UPSTREAM_FAILED: 502,
    Kind.UNAVAILABLE: 503,
    Kind.GOING_AWAY: 503,
    Kind.TOO_SLOW: 503,
}

# the general kind of each status: what a bare status (e.g. Starlette's own 404/405) becomes
_GENERAL: dict[int, Kind] = {
    400: Kind.BAD_REQUEST,
    401: Kind.UNAUTHORIZED,
    403: Kind.FORBIDDEN,
    404: Kind.NOT_FOUND,
    405: Kind.METHOD_NOT_ALLOWED,
    409: Kind.CONFLICT,
    412: Kind.PRECONDITION_FAILED,
    413: Kind.PAYLOAD_TOO_LARGE,
    415: Kind.UNSUPPORTED_MEDIA_TYPE,
    429: Kind.TOO_MANY_REQUESTS,
    500: Kind.INTERNAL,
    502: Kind.UPSTREAM_FAILED,
    503: Kind.UNAVAILABLE,
}


def kind_for_status(status: int) -> Kind:
    """The general kind of an HTTP status (a client error not listed is `bad_request`, a server one `internal`)."""
    return _GENERAL.get(status) or (Kind.BAD_REQUEST if 400 <= status < 500 else Kind.INTERNAL)


class PortsideError(Exception):
    """Base of every error that maps to a client-visible answer. Its kind decides status and code."""

    kind: Kind = Kind.INTERNAL  # the class's default; an instance may carry a finer one
    own_title: ClassVar[str | None] = None  # None: the title is the status's reason phrase

    def __init__(
        self,
        detail: str | None = None,
        *,
        kind: Kind | None = None,
        pointer: str | None = None,
        parameter: str | None = None,
        retry_after: int | None = None,
    ):
        if kind is not None:
            self.kind = kind
        self.detail = detail or self.title
        super().__init__(self.detail)
        self.pointer = pointer  # the request document member at fault (JSON:API source.pointer)
        self.parameter = parameter  # the URI query parameter at fault (JSON:API source.parameter)
        self.retry_after = retry_after  # seconds, when waiting helps (429, 503)

    @property
    def status(self) -> int:
        return self.kind.status

    @property
    def code(self) -> str:
        return self.kind.value

    @property
    def title(self) -> str:
        """The short human title: the class's own, else the reason phrase of the status."""
        return self.own_title or _REASON.get(self.status, "Error")


_REASON = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class BadRequest(PortsideError):
    kind = Kind.BAD_REQUEST


class Unauthorized(PortsideError):
    kind = Kind.UNAUTHORIZED


class Forbidden(PortsideError):
    kind = Kind.FORBIDDEN


class NotFound(PortsideError):
    kind = Kind.NOT_FOUND


class MethodNotAllowed(PortsideError):
    kind = Kind.METHOD_NOT_ALLOWED


class Conflict(PortsideError):
    kind = Kind.CONFLICT


class PayloadTooLarge(PortsideError):
    kind = Kind.PAYLOAD_TOO_LARGE


class UnsupportedMediaType(PortsideError):
    kind = Kind.UNSUPPORTED_MEDIA_TYPE


class TooManyRequests(PortsideError):
    kind = Kind.TOO_MANY_REQUESTS

    def __init__(self, detail: str | None = None, *, kind: Kind | None = None, retry_after: int = 60):
        super().__init__(detail, kind=kind, retry_after=retry_after)


class Unavailable(PortsideError):
    kind = Kind.UNAVAILABLE


class UpstreamError(PortsideError):
    """A server Portside depends on failed (ACME CA, ...)."""

    kind = Kind.UPSTREAM_FAILED


class SchemaError(PortsideError):
    """A schema document is invalid; raised at load time or by upload_system_schema."""

    kind = Kind.SCHEMA_INVALID
    own_title = "Invalid schema"


class StartupError(Exception):
    """Fatal configuration problem: the process prints it and exits non-zero."""
