"""A database made before users could manage their own sites gets the site table's `users` access grant at
the next start, once (core/catalog.py LATE_GRANTS); an administrator who takes it away afterwards keeps it
away across restarts."""

from __future__ import annotations

import sqlalchemy as sa

from support import fresh_database, start_server, sync_url

JOIN = "world_world_id_has_usergroup_usergroup_id"
KEY = "catalog.late_grants"


def users_on_site(url: str) -> int:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as c:
            return int(
                c.execute(
                    sa.text(
                        f"SELECT COUNT(*) FROM {JOIN} j JOIN world w ON w.id = j.world_id "
                        "JOIN usergroup g ON g.id = j.usergroup_id WHERE w.table_name = 'site' AND g.name = 'users'"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def run_sql(url: str, *statements: str) -> None:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.begin() as c:
            for statement in statements:
                c.execute(sa.text(statement))
    finally:
        engine.dispose()


def restart(url: str) -> None:
    start_server(url).stop()


def take_away_grant() -> str:
    return (
        f"DELETE FROM {JOIN} WHERE world_id = (SELECT id FROM world WHERE table_name = 'site') "
        "AND usergroup_id = (SELECT id FROM usergroup WHERE name = 'users')"
    )


def test_an_older_database_gets_the_site_grant_once() -> None:
    url, drop = fresh_database("sqlite")
    try:
        restart(url)
        assert users_on_site(url) == 1  # a new database: given with the table
        # as a database made by an earlier release: no grant, nothing recorded
        run_sql(url, take_away_grant(), f"DELETE FROM _config WHERE name = '{KEY}'")
        assert users_on_site(url) == 0
        restart(url)
        assert users_on_site(url) == 1
        run_sql(url, take_away_grant())  # the administrator takes it away: it stays away
        restart(url)
        assert users_on_site(url) == 0
    finally:
        drop()
