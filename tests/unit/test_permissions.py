"""Permission decisions (core spec §7.3, §7.5, §11 #2-#4): `allowed` per object, and the SQL list filter
`visible_clause`, which must select exactly the rows `allowed` accepts."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from portside.auth.identity import actor_for_user
from portside.auth.permissions import (
    ACTION_DEFAULT,
    ADMIN_GROUP,
    ALLOW_ALL,
    AUTH_EXECUTE,
    CREATE,
    DEFAULT_PERMISSION,
    DELETE,
    EXECUTE,
    GROUP_ALL,
    GROUP_SHIFT,
    GUEST,
    OWNER_ALL,
    OWNER_SHIFT,
    PEEK,
    READ,
    REFER,
    RIGHTS,
    UPDATE,
    Actor,
    allowed,
    visible_clause,
)
from portside.core import records
from portside.core.events import Grants
from portside.core.model import Model, build
from portside.core.schema import parse_document
from portside.core.systables import system_doc

ALL_RIGHTS = [PEEK, READ, CREATE, UPDATE, DELETE, EXECUTE, REFER]
RIGHT_NAMES = {v: k for k, v in RIGHTS.items()}

ALICE = Actor(user_id=1, ref="user-alice", groups=frozenset({"group-a"}), group_ids=(1,))
BOB = Actor(user_id=2, ref="user-bob", groups=frozenset({"group-b"}), group_ids=(2,))
LONER = Actor(user_id=3, ref="user-loner")
ADMIN = Actor(user_id=4, ref="user-admin", groups=frozenset({"group-admins"}), group_ids=(4,), is_admin=True)


def guest(right: int) -> int:
    return right


def owner(right: int) -> int:
    return right << OWNER_SHIFT


def group(right: int) -> int:
    return right << GROUP_SHIFT


# ---------------------------------------------------------------- constants (§7.1, §7.2)


def test_mask_constants_match_the_spec() -> None:
    assert [PEEK, READ, CREATE, UPDATE, DELETE, EXECUTE, REFER] == [1, 2, 4, 8, 16, 32, 64]
    assert (OWNER_SHIFT, GROUP_SHIFT) == (7, 14)
    assert AUTH_EXECUTE == 2097152
    assert ALLOW_ALL == 2097151 == (1 << 21) - 1
    assert DEFAULT_PERMISSION == 561441
    assert ACTION_DEFAULT == 2085120
    assert OWNER_ALL == 16256
    assert GROUP_ALL == 2080768
    assert ADMIN_GROUP == "administrators"
    assert [owner(r) for r in ALL_RIGHTS] == [128, 256, 512, 1024, 2048, 4096, 8192]
    assert [group(r) for r in ALL_RIGHTS] == [16384, 32768, 65536, 131072, 262144, 524288, 1048576]


# ---------------------------------------------------------------- allowed(): table-driven

# (case, grants factory taking the right, {actor name: expected})
ACTORS = {"guest": GUEST, "alice": ALICE, "bob": BOB, "loner": LONER, "admin": ADMIN}

CASES: list[tuple[str, Any, dict[str, bool]]] = [
    (
        "nothing",
        lambda r: Grants("user-alice", 0, (("group-a", 0),)),
        {"guest": False, "alice": False, "bob": False, "loner": False, "admin": True},
    ),
    (
        "guest bit: everybody",
        lambda r: Grants(None, guest(r)),
        {"guest": True, "alice": True, "bob": True, "loner": True, "admin": True},
    ),
    (
        "owner bit: only the owner",
        lambda r: Grants("user-alice", owner(r)),
        {"guest": False, "alice": True, "bob": False, "loner": False, "admin": True},
    ),
    (
        "owner bit, null owner: nobody (not even a guest)",
        lambda r: Grants(None, owner(r)),
        {"guest": False, "alice": False, "bob": False, "loner": False, "admin": True},
    ),
    (
        "owner is someone else",
        lambda r: Grants("user-bob", owner(r), (("group-a", 0),)),
        {"guest": False, "alice": False, "bob": True, "loner": False, "admin": True},
    ),
    (
        "owner with only the other rights' owner bits",
        lambda r: Grants("user-alice", OWNER_ALL & ~owner(r)),
        {"guest": False, "alice": False, "bob": False, "loner": False, "admin": True},
    ),
    (
        "row's own group bits without a link: nobody",
        lambda r: Grants("user-bob", group(r)),
        {"guest": False, "alice": False, "bob": False, "loner": False, "admin": True},
    ),
    (
        "row's own group bits, link without the right: nobody",
        lambda r: Grants(None, GROUP_ALL, (("group-a", 0), ("group-b", GROUP_ALL & ~group(r)))),
        {"guest": False, "alice": False, "bob": False, "loner": False, "admin": True},
    ),
    (
        "link grants the right: members of that group only",
        lambda r: Grants(None, 0, (("group-a", group(r)),)),
        {"guest": False, "alice": True, "bob": False, "loner": False, "admin": True},
    ),
    (
        "link carries guest/owner bits only: nobody",
        lambda r: Grants(None, 0, (("group-a", guest(r) | owner(r)),)),
        {"guest": False, "alice": False, "bob": False, "loner": False, "admin": True},
    ),
    (
        "two links",
        lambda r: Grants(None, 0, (("group-a", 0), ("group-b", group(r)))),
        {"guest": False, "alice": False, "bob": True, "loner": False, "admin": True},
    ),
    (
        "link to a group nobody here is in",
        lambda r: Grants(None, 0, (("group-z", GROUP_ALL),)),
        {"guest": False, "alice": False, "bob": False, "loner": False, "admin": True},
    ),
    (
        "every bit except this right's three",
        lambda r: Grants(
            "user-alice", ALLOW_ALL & ~(guest(r) | owner(r) | group(r)), (("group-a", GROUP_ALL & ~group(r)),)
        ),
        {"guest": False, "alice": False, "bob": False, "loner": False, "admin": True},
    ),
    (
        "ALLOW_ALL",
        lambda r: Grants(None, ALLOW_ALL),
        {"guest": True, "alice": True, "bob": True, "loner": True, "admin": True},
    ),
]


@pytest.mark.parametrize("right", ALL_RIGHTS, ids=lambda r: RIGHT_NAMES[r])
@pytest.mark.parametrize(("case", "grants", "expected"), CASES, ids=[c[0] for c in CASES])
def test_allowed_table(case: str, grants: Any, expected: dict[str, bool], right: int) -> None:
    g = grants(right)
    got = {name: allowed(actor, right, g) for name, actor in ACTORS.items()}
    assert got == expected, case


@pytest.mark.parametrize("right", ALL_RIGHTS, ids=lambda r: RIGHT_NAMES[r])
def test_other_rights_bits_do_not_leak(right: int) -> None:
    for other in ALL_RIGHTS:
        if other == right:
            continue
        g = Grants("user-alice", guest(other) | owner(other), (("group-a", group(other)),))
        assert allowed(ALICE, right, g) is False, (RIGHT_NAMES[right], RIGHT_NAMES[other])
        assert allowed(GUEST, right, g) is False


def test_guest_with_null_owner_gets_nothing_from_owner_bits() -> None:
    # §11 #3: a guest must not be the "owner" of an ownerless row
    g = Grants(None, OWNER_ALL)
    assert [allowed(GUEST, r, g) for r in ALL_RIGHTS] == [False] * 7
    # and a signed-in user is not the owner of an ownerless row either
    assert [allowed(ALICE, r, g) for r in ALL_RIGHTS] == [False] * 7


def test_actor_without_ref_never_matches_an_owner() -> None:
    anonymous_with_id = Actor(user_id=1, ref=None)
    assert allowed(anonymous_with_id, READ, Grants("user-alice", OWNER_ALL)) is False


def test_auth_execute_lets_any_signed_in_user_execute_only() -> None:
    g = Grants("user-bob", AUTH_EXECUTE)
    assert allowed(ALICE, EXECUTE, g) is True
    assert allowed(LONER, EXECUTE, g) is True
    assert allowed(BOB, EXECUTE, g) is True
    assert allowed(GUEST, EXECUTE, g) is False
    for r in ALL_RIGHTS:
        if r != EXECUTE:
            assert allowed(ALICE, r, g) is False, RIGHT_NAMES[r]
            assert allowed(GUEST, r, g) is False, RIGHT_NAMES[r]


def test_execute_with_null_owner() -> None:
    assert allowed(GUEST, EXECUTE, Grants(None, owner(EXECUTE))) is False
    assert allowed(ALICE, EXECUTE, Grants(None, owner(EXECUTE))) is False
    assert allowed(GUEST, EXECUTE, Grants(None, guest(EXECUTE))) is True


def test_default_permission_semantics() -> None:
    g = Grants("user-alice", DEFAULT_PERMISSION, (("group-b", DEFAULT_PERMISSION),))
    assert (allowed(GUEST, PEEK, g), allowed(GUEST, READ, g), allowed(GUEST, EXECUTE, g)) == (True, False, True)
    assert (allowed(ALICE, READ, g), allowed(ALICE, UPDATE, g)) == (True, False)
    assert (allowed(BOB, READ, g), allowed(BOB, UPDATE, g)) == (True, False)
    assert allowed(LONER, READ, g) is False


def test_administrators_are_always_allowed() -> None:
    for r in [*ALL_RIGHTS, AUTH_EXECUTE]:
        assert allowed(ADMIN, r, Grants(None, 0)) is True
    admin_without_groups = Actor(user_id=9, ref="user-root", is_admin=True)
    assert allowed(admin_without_groups, DELETE, Grants("someone", 0)) is True


def test_group_membership_alone_is_not_admin() -> None:
    # §11 #2: administrators are recognised by the actor's flag (set from the group *name*), not a group id
    fake = Actor(user_id=5, ref="user-x", groups=frozenset({"administrators", "2"}), group_ids=(2,))
    assert allowed(fake, READ, Grants(None, 0)) is False


# ---------------------------------------------------------------- SQL filter vs per-row check

USER_DOC = {"Tables": [{"TableName": "note", "Columns": [{"Name": "title", "ColumnType": "label"}]}]}
MEMBERSHIP = "user_account_user_account_id_has_usergroup_usergroup_id"
NOTE_GROUPS = "note_note_id_has_usergroup_usergroup_id"
SQL_RIGHTS = [PEEK, READ, CREATE, UPDATE, DELETE, REFER]
N_ROWS = 200
N_GROUPS = 6
N_USERS = 12


@pytest.fixture(scope="module")
def model() -> Model:
    return build([system_doc(), parse_document(USER_DOC, "user")])


@pytest.fixture
async def conn(model: Model) -> AsyncIterator[AsyncConnection]:
    engine = create_async_engine("sqlite+aiosqlite://")
    try:
        async with engine.connect() as c:
            await c.run_sync(model.metadata.create_all)
            yield c
    finally:
        await engine.dispose()


def ref(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def random_mask(rng: random.Random) -> int:
    """A random subset of bits 0-21, with a per-mask density so sparse and dense masks both occur."""
    density = rng.choice([0.05, 0.15, 0.3, 0.6])
    return sum(1 << b for b in range(22) if rng.random() < density)


@dataclass
class World:
    user_ids: list[int]
    group_ids: list[int]
    admin_user: int
    note_ids: list[int]


async def insert_id(conn: AsyncConnection, stmt: Any) -> int:
    pk = (await conn.execute(stmt)).inserted_primary_key
    assert pk is not None
    return int(pk[0])


async def populate(conn: AsyncConnection, model: Model, rng: random.Random) -> World:
    ug = model.table("usergroup").sa
    ua = model.table("user_account").sa
    mem = model.table(MEMBERSHIP).sa
    note = model.table("note").sa
    links = model.table(NOTE_GROUPS).sa

    group_ids = []
    names = [ADMIN_GROUP, *(f"group{i}" for i in range(N_GROUPS))]
    for name in names:
        stmt = ug.insert().values(name=name, reference_id=ref(rng), permission=random_mask(rng))
        group_ids.append(await insert_id(conn, stmt))
    admin_gid, plain_gids = group_ids[0], group_ids[1:]

    user_ids = []
    for i in range(N_USERS + 1):
        stmt = ua.insert().values(
            name=f"user{i}", email=f"user{i}@example.com", reference_id=ref(rng), permission=random_mask(rng)
        )
        user_ids.append(await insert_id(conn, stmt))
    admin_user = user_ids.pop()
    for uid in user_ids:
        for gid in rng.sample(plain_gids, rng.randint(0, 3)):
            await conn.execute(
                mem.insert().values(user_account_id=uid, usergroup_id=gid, reference_id=ref(rng), permission=0)
            )
    for gid in (admin_gid, rng.choice(plain_gids)):
        await conn.execute(
            mem.insert().values(user_account_id=admin_user, usergroup_id=gid, reference_id=ref(rng), permission=0)
        )

    note_ids = []
    for i in range(N_ROWS):
        owner_id = rng.choice([None, None, *user_ids, admin_user])
        permission = None if rng.random() < 0.02 else random_mask(rng)
        stmt = note.insert().values(
            title=f"n{i}", reference_id=ref(rng), permission=permission, user_account_id=owner_id
        )
        nid = await insert_id(conn, stmt)
        note_ids.append(nid)
        for gid in rng.sample(group_ids, rng.choice([0, 0, 1, 1, 2, 3])):
            await conn.execute(
                links.insert().values(note_id=nid, usergroup_id=gid, reference_id=ref(rng), permission=random_mask(rng))
            )
    return World(user_ids, group_ids, admin_user, note_ids)


async def actors(conn: AsyncConnection, model: Model, world: World) -> list[Actor]:
    out = [GUEST]
    for uid in [*world.user_ids, world.admin_user]:
        actor = await actor_for_user(conn, model, user_id=uid)
        assert actor is not None
        out.append(actor)
    return out


async def sql_visible(conn: AsyncConnection, model: Model, table: str, actor: Actor, right: int) -> set[int]:
    tm = model.table(table)
    q = sa.select(tm.sa.c.id)
    clause = visible_clause(model, tm, actor, right)
    if clause is not None:
        q = q.where(clause)
    return {int(r[0]) for r in await conn.execute(q)}


async def row_visible(conn: AsyncConnection, model: Model, table: str, actor: Actor, right: int) -> set[int]:
    rows = await records.fetch(conn, model, model.table(table))
    return {r.id for r in rows if allowed(actor, right, r.grants)}


SEEDS = [0, 1, 2, 7, 20260813]


@pytest.mark.parametrize("seed", SEEDS)
async def test_sql_filter_agrees_with_row_check(conn: AsyncConnection, model: Model, seed: int) -> None:
    rng = random.Random(seed)
    world = await populate(conn, model, rng)
    everyone = await actors(conn, model, world)
    assert sum(a.is_admin for a in everyone) == 1
    assert any(len(a.group_ids) >= 2 for a in everyone)
    assert any(a.ref is not None and not a.group_ids for a in everyone)

    rows = await records.fetch(conn, model, model.table("note"))
    assert len(rows) == N_ROWS
    by_id = {r.id: r.grants for r in rows}
    reasons = {"guest": 0, "owner": 0, "group": 0}
    for right in SQL_RIGHTS:
        for actor in everyone:
            expected = {i for i, g in by_id.items() if allowed(actor, right, g)}
            got = await sql_visible(conn, model, "note", actor, right)
            assert got == expected, (
                f"seed={seed} right={RIGHT_NAMES[right]} actor={actor.ref} groups={actor.group_ids}: "
                f"SQL only {sorted(got - expected)}, row check only {sorted(expected - got)}"
            )
            if actor.is_admin:
                assert got == set(world.note_ids)
            elif actor.ref is not None:
                for i in got:
                    g = by_id[i]
                    if g.permission & right:
                        reasons["guest"] += 1
                    elif g.owner == actor.ref:
                        reasons["owner"] += 1
                    else:
                        reasons["group"] += 1
                        assert any(gr in actor.groups and p & group(right) for gr, p in g.groups)
    # the data exercised every way of being allowed
    assert min(reasons.values()) > 0, reasons


@pytest.mark.parametrize("seed", SEEDS)
async def test_sql_filter_agrees_with_row_check_on_usergroup(conn: AsyncConnection, model: Model, seed: int) -> None:
    rng = random.Random(seed)
    world = await populate(conn, model, rng)
    everyone = await actors(conn, model, world)
    groups = await records.fetch(conn, model, model.table("usergroup"))
    assert len(groups) == N_GROUPS + 1
    for g in groups:
        # members act with the group's own mask
        assert g.grants.groups == ((g.ref, g.grants.permission),)
        assert g.grants.owner is None
    member_hits = 0
    for right in SQL_RIGHTS:
        for actor in everyone:
            expected = {g.id for g in groups if allowed(actor, right, g.grants)}
            got = await sql_visible(conn, model, "usergroup", actor, right)
            assert got == expected, (
                f"seed={seed} right={RIGHT_NAMES[right]} actor={actor.ref} groups={actor.group_ids}: "
                f"SQL only {sorted(got - expected)}, row check only {sorted(expected - got)}"
            )
            if not actor.is_admin:
                member_hits += len(
                    {g.id for g in groups if g.id in actor.group_ids and not g.grants.permission & right} & got
                )
    assert member_hits > 0


async def test_usergroup_members_act_with_the_groups_own_mask(conn: AsyncConnection, model: Model) -> None:
    ug = model.table("usergroup").sa
    ua = model.table("user_account").sa
    mem = model.table(MEMBERSHIP).sa
    await conn.execute(ug.insert().values(id=1, name="editors", reference_id="g-editors", permission=group(READ)))
    await conn.execute(ug.insert().values(id=2, name="public", reference_id="g-public", permission=guest(PEEK)))
    await conn.execute(ug.insert().values(id=3, name="owned", reference_id="g-owned", permission=OWNER_ALL))
    await conn.execute(ua.insert().values(id=1, name="m", email="m@x.org", reference_id="u-member", permission=0))
    await conn.execute(ua.insert().values(id=2, name="o", email="o@x.org", reference_id="u-other", permission=0))
    for gid in (1, 3):
        await conn.execute(mem.insert().values(user_account_id=1, usergroup_id=gid, reference_id=f"m{gid}"))
    member = await actor_for_user(conn, model, user_id=1)
    other = await actor_for_user(conn, model, user_id=2)
    assert member is not None and other is not None
    assert member.groups == frozenset({"g-editors", "g-owned"})

    grants = {r.ref: r.grants for r in await records.fetch(conn, model, model.table("usergroup"))}
    assert grants["g-editors"] == Grants(None, group(READ), (("g-editors", group(READ)),))
    assert allowed(member, READ, grants["g-editors"]) is True
    assert allowed(member, UPDATE, grants["g-editors"]) is False
    assert allowed(other, READ, grants["g-editors"]) is False
    assert allowed(GUEST, READ, grants["g-editors"]) is False
    assert allowed(GUEST, PEEK, grants["g-public"]) is True
    assert allowed(member, READ, grants["g-owned"]) is False  # a group has no owner

    assert await sql_visible(conn, model, "usergroup", member, READ) == {1}
    assert await sql_visible(conn, model, "usergroup", other, READ) == set()
    assert await sql_visible(conn, model, "usergroup", GUEST, PEEK) == {2}
    assert await sql_visible(conn, model, "usergroup", member, PEEK) == {2}


async def test_group_link_is_required_for_group_rights(conn: AsyncConnection, model: Model) -> None:
    """A row's own group bits grant nothing; a link grants only to members of the linked group."""
    ug = model.table("usergroup").sa
    ua = model.table("user_account").sa
    mem = model.table(MEMBERSHIP).sa
    note = model.table("note").sa
    links = model.table(NOTE_GROUPS).sa
    await conn.execute(ug.insert().values(id=1, name="a", reference_id="g-a", permission=0))
    await conn.execute(ug.insert().values(id=2, name="b", reference_id="g-b", permission=0))
    await conn.execute(ua.insert().values(id=1, name="ann", email="a@x.org", reference_id="u-ann", permission=0))
    await conn.execute(mem.insert().values(user_account_id=1, usergroup_id=1, reference_id="m1"))
    # 1: own group bits, no link; 2: linked to b (not ann's); 3: linked to a with READ; 4: linked to a, PEEK only
    await conn.execute(note.insert().values(id=1, title="x", reference_id="n1", permission=GROUP_ALL))
    await conn.execute(note.insert().values(id=2, title="x", reference_id="n2", permission=GROUP_ALL))
    await conn.execute(note.insert().values(id=3, title="x", reference_id="n3", permission=0))
    await conn.execute(note.insert().values(id=4, title="x", reference_id="n4", permission=GROUP_ALL))
    await conn.execute(links.insert().values(note_id=2, usergroup_id=2, reference_id="l2", permission=GROUP_ALL))
    await conn.execute(links.insert().values(note_id=3, usergroup_id=1, reference_id="l3", permission=group(READ)))
    await conn.execute(links.insert().values(note_id=4, usergroup_id=1, reference_id="l4", permission=group(PEEK)))
    ann = await actor_for_user(conn, model, user_id=1)
    assert ann is not None
    assert await sql_visible(conn, model, "note", ann, READ) == {3}
    assert await row_visible(conn, model, "note", ann, READ) == {3}
    assert await sql_visible(conn, model, "note", ann, PEEK) == {4}
    assert await row_visible(conn, model, "note", ann, PEEK) == {4}
    assert await sql_visible(conn, model, "note", GUEST, READ) == set()
    assert await row_visible(conn, model, "note", GUEST, READ) == set()


async def test_null_owner_rows_are_not_visible_to_guests(conn: AsyncConnection, model: Model) -> None:
    note = model.table("note").sa
    ua = model.table("user_account").sa
    await conn.execute(ua.insert().values(id=1, name="ann", email="a@x.org", reference_id="u-ann", permission=0))
    await conn.execute(note.insert().values(id=1, title="x", reference_id="n1", permission=OWNER_ALL))
    await conn.execute(
        note.insert().values(id=2, title="x", reference_id="n2", permission=OWNER_ALL, user_account_id=1)
    )
    await conn.execute(note.insert().values(id=3, title="x", reference_id="n3", permission=OWNER_ALL | READ))
    ann = await actor_for_user(conn, model, user_id=1)
    assert ann is not None
    for right in (PEEK, READ, UPDATE):
        assert await sql_visible(conn, model, "note", GUEST, right) == ({3} if right == READ else set())
        assert await row_visible(conn, model, "note", GUEST, right) == ({3} if right == READ else set())
        assert await sql_visible(conn, model, "note", ann, right) == ({2, 3} if right == READ else {2})
        assert await row_visible(conn, model, "note", ann, right) == ({2, 3} if right == READ else {2})


async def test_admin_is_recognised_by_group_name(conn: AsyncConnection, model: Model) -> None:
    ug = model.table("usergroup").sa
    ua = model.table("user_account").sa
    mem = model.table(MEMBERSHIP).sa
    # the administrators group is deliberately not id 2
    await conn.execute(ug.insert().values(id=2, name="users", reference_id="g-users", permission=0))
    await conn.execute(ug.insert().values(id=7, name=ADMIN_GROUP, reference_id="g-admins", permission=0))
    await conn.execute(ua.insert().values(id=1, name="u", email="u@x.org", reference_id="u-user", permission=0))
    await conn.execute(ua.insert().values(id=2, name="r", email="r@x.org", reference_id="u-root", permission=0))
    await conn.execute(mem.insert().values(user_account_id=1, usergroup_id=2, reference_id="m1"))
    await conn.execute(mem.insert().values(user_account_id=2, usergroup_id=7, reference_id="m2"))
    user = await actor_for_user(conn, model, user_id=1)
    root = await actor_for_user(conn, model, user_id=2)
    assert user is not None and root is not None
    assert (user.is_admin, root.is_admin) == (False, True)
    assert visible_clause(model, model.table("note"), root, READ) is None
    assert visible_clause(model, model.table("note"), user, READ) is not None


@pytest.mark.parametrize("seed", [3, 11])
async def test_sql_filter_agrees_with_row_check_for_execute(conn: AsyncConnection, model: Model, seed: int) -> None:
    """visible_clause promises the rows `allowed` accepts for any right; EXECUTE includes AuthenticatedExecute."""
    rng = random.Random(seed)
    world = await populate(conn, model, rng)
    for actor in await actors(conn, model, world):
        expected = await row_visible(conn, model, "note", actor, EXECUTE)
        got = await sql_visible(conn, model, "note", actor, EXECUTE)
        assert got == expected, (
            f"seed={seed} actor={actor.ref}: SQL only {sorted(got - expected)}, row check only {sorted(expected - got)}"
        )


async def test_join_table_rows_are_guarded_by_their_own_permission(conn: AsyncConnection, model: Model) -> None:
    links = model.table(NOTE_GROUPS)
    ua = model.table("user_account").sa
    await conn.execute(ua.insert().values(id=1, name="ann", email="a@x.org", reference_id="u-ann", permission=0))
    await conn.execute(links.sa.insert().values(id=1, note_id=1, usergroup_id=1, reference_id="l1", permission=READ))
    await conn.execute(
        links.sa.insert().values(id=2, note_id=2, usergroup_id=1, reference_id="l2", permission=OWNER_ALL)
    )
    ann = await actor_for_user(conn, model, user_id=1)
    assert ann is not None
    rows = await records.fetch(conn, model, links)
    assert {r.ref: r.grants for r in rows} == {"l1": Grants(None, READ), "l2": Grants(None, OWNER_ALL)}
    assert await sql_visible(conn, model, NOTE_GROUPS, ann, READ) == {1}
    assert await row_visible(conn, model, NOTE_GROUPS, ann, READ) == {1}


def test_audience_contains_every_allowed_actor() -> None:
    """`audience` may only narrow fan-out: whoever `allowed` admits is inside it, for every right."""
    from portside.auth.permissions import RIGHTS, audience

    rng = random.Random(11)
    users, groups = ["u1", "u2", "u3", None], ["g1", "g2", "g3"]
    checked = admitted = 0
    for _ in range(3000):
        grants = Grants(
            owner=rng.choice(users),
            permission=rng.getrandbits(22),
            groups=tuple((g, rng.getrandbits(22)) for g in rng.sample(groups, rng.randint(0, 2))),
        )
        ref = rng.choice(users)
        actor = Actor(
            user_id=1 if ref else None,
            ref=ref,
            groups=frozenset(rng.sample(groups, rng.randint(0, 2))) if ref else frozenset(),
            is_admin=ref is not None and rng.random() < 0.1,
        )
        for right in RIGHTS.values():
            who = audience(right, grants)
            inside = who.everyone or actor.is_admin or ref == who.owner or bool(actor.groups & set(who.groups))
            checked += 1
            if allowed(actor, right, grants):
                admitted += 1
                assert inside, (actor, right, grants, who)
    assert admitted > checked // 10  # the sample exercises both outcomes
