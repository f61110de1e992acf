"""Performers: named operations an action outcome can execute (`Method: EXECUTE`, `Type: <name>`).

Later ports register theirs here (publish_to_topic, mail.send, ...) with `performers.register`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from portside.auth.permissions import Actor
from portside.core.db import UnitOfWork
from portside.core.records import RowData

if TYPE_CHECKING:
    from portside.actions.services import Services

Response = dict[str, Any]


def response(kind: str, attributes: Any) -> Response:
    return {"ResponseType": kind, "Attributes": attributes}


def notify(kind: str, title: str, message: str) -> Response:
    return response("client.notify", {"type": kind, "title": title, "message": message})


@dataclass
class ActionContext:
    services: Services
    actor: Actor
    uow: UnitOfWork
    on_type: str
    action: str
    attributes: dict[str, Any]
    subject: RowData | None = None
    client: str = ""
    cookies: list[tuple[str, str | None]] = field(default_factory=list)  # None: clear the cookie
    status: int = 200
    post: list[Callable[[], Awaitable[list[Response]]]] = field(default_factory=list)  # run after commit


Performer = Callable[[ActionContext, dict[str, Any]], Awaitable[list[Response]]]


class Registry:
    def __init__(self) -> None:
        self._performers: dict[str, Performer] = {}

    def register(self, name: str) -> Callable[[Performer], Performer]:
        """Decorator: `@performers.register("mail.send")`."""

        def deco(f: Performer) -> Performer:
            self.add(name, f)
            return f

        return deco

    def add(self, name: str, fn: Performer) -> None:
        if name in self._performers:
            raise ValueError(f"performer {name!r} registered twice")
        self._performers[name] = fn

    def get(self, name: str) -> Performer | None:
        return self._performers.get(name)

    def names(self) -> list[str]:
        return sorted(self._performers)


performers = Registry()
