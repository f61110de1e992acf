"""An existing database whose columns are narrower than the model declares is widened at start."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from support import fresh_database, start_server, sync_url


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_event_log_reference_is_widened_at_start(kind: str) -> None:
    url, drop = fresh_database(kind)
    try:
        srv = start_server(url)
        srv.stop()
        engine = sa.create_engine(sync_url(url))
        narrow = (
            "ALTER TABLE _event_log ALTER COLUMN reference_id TYPE varchar(36)"
            if kind == "postgresql"
            else "ALTER TABLE _event_log MODIFY reference_id varchar(36) NOT NULL"
        )
        length = (
            "SELECT character_maximum_length FROM information_schema.columns "
            "WHERE table_name = '_event_log' AND column_name = 'reference_id'"
            + (" AND table_schema = DATABASE()" if kind == "mysql" else "")
        )
        try:
            with engine.begin() as c:
                c.execute(sa.text(narrow))
                assert c.execute(sa.text(length)).scalar_one() == 36
            srv = start_server(url, srv.data_dir)
            srv.stop()
            with engine.connect() as c:
                assert c.execute(sa.text(length)).scalar_one() == 255
        finally:
            engine.dispose()
    finally:
        drop()
