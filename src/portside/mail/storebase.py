"""What the parts of `MailStore` share: the database and the catalog the current model comes from."""

from __future__ import annotations

from typing import Protocol

from portside.core.db import Database
from portside.core.model import Model


class HasModel(Protocol):
    @property
    def model(self) -> Model: ...


class StoreBase:
    """The database and the catalog (its current model) every part of the store works on."""

    def __init__(self, db: Database, catalog: HasModel):
        self.db = db
        self.catalog = catalog

    @property
    def model(self) -> Model:
        return self.catalog.model
