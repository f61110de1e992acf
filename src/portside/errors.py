"""Errors are data: each class knows its HTTP status; edges turn them into wire format in one place."""

from __future__ import annotations

from typing import Any


class PortsideError(Exception):
    """Base of every error that maps to a client-visible answer."""

    status: int = 500
    title: str = "Internal Server Error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        pointer: str | None = None,
        code: str | None = None,
        parameter: str | None = None,
    ):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.pointer = pointer
        self.code = code
        self.parameter = parameter  # the URI query parameter at fault (JSON:API source.parameter)

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"status": str(self.status), "title": self.title, "detail": self.detail}
        if self.code:
            obj["code"] = self.code
        source = {k: v for k, v in (("pointer", self.pointer), ("parameter", self.parameter)) if v}
        if source:
            obj["source"] = source
        return obj


class BadRequest(PortsideError):
    status = 400
    title = "Bad Request"


class Unauthorized(PortsideError):
    status = 401
    title = "Unauthorized"


class Forbidden(PortsideError):
    status = 403
    title = "Forbidden"


class NotFound(PortsideError):
    status = 404
    title = "Not Found"


class MethodNotAllowed(PortsideError):
    status = 405
    title = "Method Not Allowed"


class Conflict(PortsideError):
    status = 409
    title = "Conflict"


class PayloadTooLarge(PortsideError):
    status = 413
    title = "Payload Too Large"


class UnsupportedMediaType(PortsideError):
    status = 415
    title = "Unsupported Media Type"


class TooManyRequests(PortsideError):
    status = 429
    title = "Too Many Requests"

    def __init__(self, detail: str | None = None, *, retry_after: int = 60):
        super().__init__(detail)
        self.retry_after = retry_after


class SchemaError(PortsideError):
    """A schema document is invalid; raised at load time or by upload_system_schema."""

    status = 400
    title = "Invalid schema"


class StartupError(Exception):
    """Fatal configuration problem: the process prints it and exits non-zero."""
