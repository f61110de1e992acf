"""The mail data layer on every database: standard mailboxes with the account, UIDs unique under concurrent
delivery from two "nodes", byte-exact raw storage (and Daptin's stored forms), flags and MODSEQ, expunge
tombstones, and who sees mail through /api and /live.

A real server (with Redis, so writes of other processes reach /live) owns the database; the test writes
mail through `MailStore` from its own process, as a second node would."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
import websockets

from portside.actions.builtin import builtin_doc
from portside.actions.certs import certs_doc
from portside.core.db import Database
from portside.core.model import Model, build
from portside.core.systables import system_doc
from portside.mail import message
from portside.mail.store import MailStore
from portside.mail.tables import mail_doc
from portside.mail.values import Delivery, Target, Verdict
from support import REDIS, Server, create, me, new_user, quiet, recv, start_server, sync_url

STANDARD = {
    "INBOX": "",
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Junk": "\\Junk",
    "Trash": "\\Trash",
    "Archive": "\\Archive",
}


@dataclass
class MailWorld:
    server: Server
    db_url: str
    admin: str
    owner: str
    stranger: str
    account_ref: str


class Holder:
    def __init__(self, model: Model):
        self.model = model


@pytest.fixture(scope="module")
def world(db_url: str) -> Iterator[MailWorld]:
    server = start_server(db_url, None, "--redis-url", REDIS)
    _, admin = new_user(server, "madmin")
    _, owner = new_user(server, "mowner")
    _, stranger = new_user(server, "mstranger")
    with server.client(admin) as c:
        assert c.post("/action/world/become_an_administrator").status_code == 200
        r = create(c, "mail_server", hostname="Example.COM", domains="mail.example.com")
        assert r.status_code == 201, r.text
        server_ref = r.json()["data"]["id"]
        with server.client(owner) as oc:
            owner_ref = me(oc)["id"]
        r = c.post(
            "/api/mail_account",
            json={
                "data": {
                    "type": "mail_account",
                    "attributes": {"username": "Alice@Example.com", "password": "pw1", "user_account_id": owner_ref},
                    "relationships": {"mail_server_id": {"data": {"type": "mail_server", "id": server_ref}}},
                }
            },
        )
        assert r.status_code == 201, r.text
        account_ref = r.json()["data"]["id"]
    yield MailWorld(server, db_url, admin, owner, stranger, account_ref)
    server.stop()


def store_for(url: str) -> tuple[Database, MailStore]:
    db = Database(url)
    model = build([system_doc(), builtin_doc(), certs_doc(), mail_doc()])
    return db, MailStore(db, Holder(model))


def raw_message(n: int, extra: bytes = b"") -> bytes:
    return (
        b"From: Bob <bob@ext.org>\r\nTo: alice@example.com\r\nSubject: hello " + str(n).encode() + b"\r\n"
        b"Message-ID: <m" + str(n).encode() + b"@ext.org>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\n"
        b"body " + str(n).encode() + b"\r\n" + extra
    )


def test_standard_mailboxes_exist_with_the_account_and_only_the_owner_sees_them(world: MailWorld) -> None:
    with world.server.client(world.owner) as c:
        r = c.get("/api/mail_box", params={"page[size]": 50})
        assert r.status_code == 200, r.text
        got = {row["attributes"]["name"]: row["attributes"]["role"] for row in r.json()["data"]}
        assert got == STANDARD
        validity = {row["attributes"]["uidvalidity"] for row in r.json()["data"]}
        assert all(v > 1_700_000_000 for v in validity)
        r = c.get("/api/mail_account")
        accounts = r.json()["data"]
        assert [a["attributes"]["username"] for a in accounts] == ["alice@example.com"]
        assert accounts[0]["attributes"]["password"] == "" and "password_md5" not in accounts[0]["attributes"]
        # owners read; creating accounts (claiming addresses) is for administrators
        r = create(c, "mail_account", username="mallory@example.com", password="x")
        assert r.status_code == 403, r.text
    with world.server.client(world.stranger) as c:
        assert c.get("/api/mail_box").json()["data"] == []
        assert c.get("/api/mail_account").json()["data"] == []
        assert c.get("/api/mail_expunged").json()["data"] == []


def test_local_domains_and_account_lookup(world: MailWorld) -> None:
    async def main() -> None:
        db, store = store_for(world.db_url)
        try:
            assert await store.local_domains() >= {"example.com", "mail.example.com"}
            acc = await store.account("ALICE@example.com")
            assert acc is not None and acc.username == "alice@example.com" and acc.ref == world.account_ref
            assert await store.account("nobody@example.com") is None
            assert await store.account("alice@example.com\x00") is None
        finally:
            await db.dispose()

    asyncio.run(main())


def test_uids_are_unique_and_dense_under_concurrent_delivery_from_two_nodes(world: MailWorld) -> None:
    async def main() -> None:
        (db1, s1), (db2, s2) = store_for(world.db_url), store_for(world.db_url)
        try:
            acc = await s1.account("alice@example.com")
            assert acc is not None
            inbox = await s1.mailbox(acc.id, "inbox")
            assert inbox is not None and inbox.name == "INBOX"
            start = inbox.nextuid

            async def one(db: Database, store: MailStore, n: int) -> int:
                async with db.transaction() as uow:
                    [stored] = await store.deliver(uow, [Target(inbox, recipient="alice@example.com")], raw_message(n))
                return stored.uid

            uids = await asyncio.gather(*(one(*((db1, s1) if n % 2 else (db2, s2)), n) for n in range(30)))
            assert sorted(uids) == list(range(start, start + 30))
            after = await s1.mailbox(acc.id, "INBOX")
            assert after is not None and after.nextuid == start + 30
            metas = await s1.messages(inbox.id)
            assert [m.uid for m in metas][-30:] == list(range(start, start + 30))
            # modseqs are distinct per change and the box's counter is the highest
            assert len({m.modseq for m in metas}) == len(metas) and after.modseq == max(m.modseq for m in metas)
        finally:
            await db1.dispose()
            await db2.dispose()

    asyncio.run(main())


def test_a_batch_of_deliveries_gets_its_rows_uids_and_events_in_order(world: MailWorld) -> None:
    """deliver_many (group commit): one UID bump per box, one multi-row INSERT, one event-log INSERT; each
    event carries its own row and the offset the log gave that row."""

    async def main() -> None:
        db, store = store_for(world.db_url)
        try:
            acc = await store.account("alice@example.com")
            assert acc is not None
            inbox, junk = await store.mailbox(acc.id, "INBOX"), await store.mailbox_by_role(acc.id, "\\Junk")
            assert inbox is not None and junk is not None
            batch = [Delivery([Target(inbox, recipient="alice@example.com")], raw_message(700 + n)) for n in range(5)]
            batch.insert(2, Delivery([Target(junk, ["$Junk"]), Target(inbox)], raw_message(799)))
            async with db.transaction() as uow:
                stored = await store.deliver_many(uow, batch)
                events = list(uow.events)
            assert [len(s) for s in stored] == [1, 1, 2, 1, 1, 1]
            in_inbox = [s for group in stored for s in group if s.mailbox_id == inbox.id]
            assert [s.uid for s in in_inbox] == list(range(inbox.nextuid, inbox.nextuid + 6))
            assert stored[2][0].mailbox_id == junk.id and stored[2][0].uid == junk.nextuid
            assert len({s.modseq for s in in_inbox}) == 1  # the box's one change in this transaction
            rows = [s for group in stored for s in group]
            assert [e.ref for e in events] == [s.ref for s in rows]
            assert [e.table for e in events] == ["mail"] * 7 and all(e.type == "create" for e in events)
            assert [e.data["uid"] for e in events] == [s.uid for s in rows]
            assert [e.offset for e in events] == sorted(e.offset for e in events)
            async with db.read() as conn:
                log = dict(
                    (
                        await conn.execute(
                            sa.text("SELECT \"offset\", reference_id FROM _event_log WHERE table_name = 'mail'")
                            if not world.db_url.startswith("mysql")
                            else sa.text("SELECT `offset`, reference_id FROM _event_log WHERE table_name = 'mail'")
                        )
                    ).all()
                )
                t = store.model.table("mail").sa
                subjects = dict((await conn.execute(sa.select(t.c.reference_id, t.c.subject))).all())
            assert all(log[e.offset] == e.ref for e in events)  # each event's offset is its own row's
            assert [subjects[s.ref] for s in rows] == [
                "hello 700", "hello 701", "hello 799", "hello 799", "hello 702", "hello 703", "hello 704"
            ]  # fmt: skip
        finally:
            await db.dispose()

    asyncio.run(main())


def test_one_message_to_several_boxes_is_all_or_nothing(world: MailWorld) -> None:
    async def main() -> None:
        db, store = store_for(world.db_url)
        try:
            acc = await store.account("alice@example.com")
            assert acc is not None
            inbox, junk = await store.mailbox(acc.id, "INBOX"), await store.mailbox_by_role(acc.id, "\\Junk")
            assert inbox is not None and junk is not None
            before = [len(await store.messages(b.id)) for b in (inbox, junk)]
            with pytest.raises(RuntimeError):
                async with db.transaction() as uow:
                    await store.deliver(uow, [Target(inbox), Target(junk, ["$Junk"])], raw_message(500))
                    raise RuntimeError("the second recipient failed")
            assert [len(await store.messages(b.id)) for b in (inbox, junk)] == before
            verdict = Verdict(7.5, True, {"spf": "fail", "score": 7.5})
            async with db.transaction() as uow:
                done = await store.deliver(uow, [Target(junk, ["$Junk"])], raw_message(501), verdict=verdict)
            async with db.read() as conn:
                t = store.model.table("mail").sa
                row = (await conn.execute(sa.select(t).where(t.c.id == done[0].id))).one()
            assert row.junk and row.spam and row.spam_score == 7.5 and row.keywords == "$Junk"
            assert json.loads(row.spam_verdict) == {"spf": "fail", "score": 7.5}
            assert row.recent and not row.seen and row.flags == "\\Recent,$Junk"
            assert row.subject == "hello 501" and row.message_id == "<m501@ext.org>" and row.body == "body 501\r\n"
        finally:
            await db.dispose()

    asyncio.run(main())


ODD = (
    b"From: x@ext.org\nSubject: =?utf-8?q?caf=C3=A9?=\r\nX-Bin: \xff\xfe\x80\r\n\r\n"
    b"line with trailing spaces   \r\nbare LF\nbare CR\rlast line without newline \x00"
)


def test_raw_messages_are_stored_byte_exact_and_daptin_forms_read(world: MailWorld) -> None:
    big = ODD + b"\r\n" + b"compressible line of text\r\n" * 4000

    async def main() -> None:
        db, store = store_for(world.db_url)
        try:
            acc = await store.account("alice@example.com")
            assert acc is not None
            archive = await store.mailbox(acc.id, "Archive")
            assert archive is not None
            async with db.transaction() as uow:
                small_stored = await store.append(uow, archive, ODD, flags=["\\Seen"])
                big_stored = await store.append(uow, archive, big)
            assert await store.raw(small_stored.id) == ODD
            assert await store.raw(big_stored.id) == big
            t = store.model.table("mail").sa
            async with db.read() as conn:
                stored_big = await conn.scalar(sa.select(t.c.mail).where(t.c.id == big_stored.id))
                size = await conn.scalar(sa.select(t.c.size).where(t.c.id == big_stored.id))
            assert stored_big.startswith("ps1:gz:") and len(stored_big) < len(big) // 4 and size == len(big)
            # Daptin's stored forms: bare base64, and the asset list with the contents inlined
            plain = base64.b64encode(ODD).decode()
            asset = json.dumps([{"name": "x.eml", "path": "", "type": "message/rfc822", "contents": plain}])
            for form in (plain, asset):
                async with db.transaction() as uow:
                    await uow.conn.execute(t.update().where(t.c.id == small_stored.id).values(mail=form))
                assert await store.raw(small_stored.id) == ODD
            with pytest.raises(message.StoredFormError):
                message.decode("ps1:gz:not base64!")
        finally:
            await db.dispose()

    asyncio.run(main())


def test_flags_modseq_expunge_tombstones_and_copy(world: MailWorld) -> None:
    async def main() -> None:
        db, store = store_for(world.db_url)
        try:
            acc = await store.account("alice@example.com")
            assert acc is not None
            trash = await store.mailbox(acc.id, "Trash")
            archive = await store.mailbox(acc.id, "Archive")
            assert trash is not None and archive is not None
            async with db.transaction() as uow:
                stored = [(await store.append(uow, trash, raw_message(900 + i))) for i in range(3)]
            uids = [s.uid for s in stored]
            assert uids == [1, 2, 3]
            trash = await store.mailbox(acc.id, "Trash")
            assert trash is not None
            async with db.transaction() as uow:
                res = await store.set_flags(uow, trash, uids[:2], ["\\Flagged", "Work"], mode="add")
            assert [u for u, _, _ in res.changed] == uids[:2] and res.failed == []
            assert res.changed[0][2] == ["\\Flagged", "Work"]
            flagged_modseq = res.modseq
            trash = await store.mailbox(acc.id, "Trash")
            assert trash is not None and trash.modseq == flagged_modseq
            async with db.transaction() as uow:  # no change: no new modseq
                again = await store.set_flags(uow, trash, uids[:2], ["\\flagged"], mode="add")
            assert again.changed == []
            # CONDSTORE: a message changed after the given modseq is refused
            async with db.transaction() as uow:
                cond = await store.set_flags(
                    uow, trash, uids, ["\\Deleted"], mode="add", unchanged_since=flagged_modseq - 1
                )
            assert cond.failed == uids[:2] and [u for u, _, _ in cond.changed] == [uids[2]]
            with pytest.raises(Exception) as bad:
                async with db.transaction() as uow:
                    await store.set_flags(uow, trash, uids, ["bad flag"], mode="add")
            assert "invalid flag" in str(bad.value)
            # \Deleted marks; the message is still listed until EXPUNGE
            assert [m.uid for m in await store.messages(trash.id)] == uids
            async with db.transaction() as uow:
                pairs = await store.copy(uow, trash, uids[:1], archive)
            assert len(pairs) == 1 and pairs[0][0] == uids[0]
            async with db.transaction() as uow:
                gone = await store.expunge(uow, trash, None)
            assert gone == [uids[2]]
            assert [m.uid for m in await store.messages(trash.id)] == uids[:2]
            assert await store.vanished(trash.id, flagged_modseq) == [uids[2]]
            assert await store.vanished(trash.id, 10**9) == []
            async with db.transaction() as uow:
                gone = await store.expunge(uow, trash, [uids[0]], only_deleted=False)
            assert gone == [uids[0]]
            # UIDs are never reused: the next message gets a larger one than any before
            async with db.transaction() as uow:
                later = await store.append(uow, trash, raw_message(999))
            assert later.uid == 4
            changed = await store.messages(trash.id, changed_since=flagged_modseq)
            assert [m.uid for m in changed] == [4]
        finally:
            await db.dispose()

    asyncio.run(main())


def ws_url(server: Server, token: str) -> str:
    return server.url.replace("http://", "ws://") + f"/live?token={token}"


async def subscribe(ws: Any) -> None:
    await recv(ws)  # session frame
    await ws.send(json.dumps({"id": "s", "method": "subscribe", "attributes": {"topicName": "mail"}}))
    r = await recv(ws)
    assert r["type"] == "response" and r["ok"] is True, r


def test_owner_reads_mail_through_api_and_live_nobody_else(world: MailWorld) -> None:
    async def main() -> None:
        db, store = store_for(world.db_url)
        try:
            async with (
                websockets.connect(ws_url(world.server, world.owner)) as mine,
                websockets.connect(ws_url(world.server, world.stranger)) as theirs,
            ):
                await subscribe(mine)
                await subscribe(theirs)
                acc = await store.account("alice@example.com")
                assert acc is not None
                inbox = await store.mailbox(acc.id, "INBOX")
                assert inbox is not None
                async with db.transaction() as uow:
                    [stored] = await store.deliver(uow, [Target(inbox)], raw_message(4242))
                # (the events of earlier tests' writes may arrive here too: other nodes' writes are swept up)
                got = [f for f in await quiet(mine, 3.0) if f["type"] == "event"]
                datas = [json.loads(base64.b64decode(f["data"])) for f in got]
                ours = [d for d in datas if d.get("reference_id") == stored.ref]
                assert len(ours) == 1 and got[datas.index(ours[0])]["event"] == "create", got
                data = ours[0]
                assert data["subject"] == "hello 4242" and data["uid"] == stored.uid and "mail" not in data
                assert [f for f in await quiet(theirs, 1.0) if f["type"] == "event"] == []
        finally:
            await db.dispose()
        with world.server.client(world.owner) as c:
            r = c.get(f"/api/mail/{stored.ref}")
            assert r.status_code == 200 and r.json()["data"]["attributes"]["subject"] == "hello 4242"
        with world.server.client(world.stranger) as c:
            assert c.get(f"/api/mail/{stored.ref}").status_code in (403, 404)
            assert c.get("/api/mail").json()["data"] == []

    asyncio.run(main())


def test_mail_rows_are_not_writable_by_their_owner(world: MailWorld) -> None:
    with world.server.client(world.owner) as c:
        rows = c.get("/api/mail", params={"page[size]": 1}).json()["data"]
        assert rows, "earlier tests delivered mail"
        ref = rows[0]["id"]
        r = c.patch(f"/api/mail/{ref}", json={"data": {"type": "mail", "id": ref, "attributes": {"uid": 1}}})
        assert r.status_code == 403, r.text
    engine = sa.create_engine(sync_url(world.db_url))
    try:
        with engine.connect() as conn:
            dup = conn.execute(
                sa.text("SELECT mail_box_id, uid, COUNT(*) FROM mail GROUP BY mail_box_id, uid HAVING COUNT(*) > 1")
            ).all()
        assert dup == []
    finally:
        engine.dispose()


def test_mailbox_create_rename_subscribe_delete(world: MailWorld) -> None:
    async def main() -> None:
        db, store = store_for(world.db_url)
        try:
            acc = await store.account("alice@example.com")
            assert acc is not None
            async with db.transaction() as uow:
                work = await store.create_mailbox(uow, acc, "Work/Projects")
            assert work.uidvalidity > 0 and work.nextuid == 1 and work.subscribed
            with pytest.raises(Exception) as dup:
                async with db.transaction() as uow:
                    await store.create_mailbox(uow, acc, "Work/Projects")
            assert "already exists" in str(dup.value)
            for bad in ("", " lead", "a\x00b", "x" * 101):
                with pytest.raises(Exception) as err:
                    async with db.transaction() as uow:
                        await store.create_mailbox(uow, acc, bad)
                assert "mailbox name" in str(err.value)
            async with db.transaction() as uow:
                stored = await store.append(uow, work, raw_message(7001))
            assert await store.find_message_id(work.id, "<m7001@ext.org>") == [stored.uid]
            async with db.transaction() as uow:
                renamed = await store.rename_mailbox(uow, work, "Done")
                await store.set_subscribed(uow, renamed, False)
            again = await store.mailbox(acc.id, "Done")
            assert again is not None and again.id == work.id and not again.subscribed
            assert again.uidvalidity != work.uidvalidity
            inbox = await store.mailbox(acc.id, "INBOX")
            assert inbox is not None
            for op in ("rename", "delete"):
                with pytest.raises(Exception) as refused:
                    async with db.transaction() as uow:
                        if op == "rename":
                            await store.rename_mailbox(uow, inbox, "Old")
                        else:
                            await store.delete_mailbox(uow, inbox)
                assert "INBOX" in str(refused.value)
            async with db.transaction() as uow:
                assert await store.delete_mailbox(uow, again) == 1
            assert await store.mailbox(acc.id, "Done") is None
            assert await store.messages(work.id) == []
            # a box created again under an old name gets a new UIDVALIDITY
            async with db.transaction() as uow:
                reborn = await store.create_mailbox(uow, acc, "Done")
            assert reborn.uidvalidity > again.uidvalidity
        finally:
            await db.dispose()

    asyncio.run(main())


def test_mail_follows_the_account_to_a_new_owner(world: MailWorld) -> None:
    with world.server.client(world.owner) as c:
        mine = len(c.get("/api/mail", params={"page[size]": 500}).json()["data"])
        assert mine > 0 and len(c.get("/api/mail_box", params={"page[size]": 50}).json()["data"]) >= 6
    with world.server.client(world.stranger) as c:
        new_owner = me(c)["id"]
    with world.server.client(world.admin) as c:
        r = c.patch(
            f"/api/mail_account/{world.account_ref}",
            json={
                "data": {"type": "mail_account", "id": world.account_ref, "attributes": {"user_account_id": new_owner}}
            },
        )
        assert r.status_code == 200, r.text
    with world.server.client(world.owner) as c:
        assert c.get("/api/mail").json()["data"] == [] and c.get("/api/mail_box").json()["data"] == []
    with world.server.client(world.stranger) as c:
        assert len(c.get("/api/mail", params={"page[size]": 500}).json()["data"]) == mine
        assert {b["attributes"]["name"] for b in c.get("/api/mail_box", params={"page[size]": 50}).json()["data"]} >= {
            "INBOX",
            "Sent",
        }


def test_imap_index_catches_up_by_modseq_and_matches_the_rows(world: MailWorld) -> None:
    """The IMAP per-mailbox index (imap.boxindex) over the store's compact reads: after flag changes,
    expunges and new messages it holds exactly what the rows say, its change log answers what changed since
    a modseq as the store does, a write that bypassed the modseq (seen by its event) makes it read all again,
    and \\Recent is claimed once over a UID range."""
    from portside.imap.boxindex import BoxIndexes
    from portside.imap.store import Hint

    async def main() -> None:
        db, store = store_for(world.db_url)
        try:
            acc = await store.account("alice@example.com")
            assert acc is not None
            async with db.transaction() as uow:
                box = await store.create_mailbox(uow, acc, "IndexTest")
            async with db.transaction() as uow:
                for n in range(30):
                    await store.append(uow, box, raw_message(1000 + n), flags=["\\Seen"] if n % 2 else [])
            indexes = BoxIndexes()

            async def index() -> Any:
                b = await store.mailbox(acc.id, "IndexTest")
                assert b is not None
                return await indexes.catch_up(
                    b.ref,
                    b.uidvalidity,
                    b.modseq,
                    lambda since: store.flag_index(b.id, changed_since=since),
                    lambda since: store.expunged_since(b.id, since),
                )

            async def rows() -> dict[int, tuple[frozenset[str], int]]:
                return {m.uid: (frozenset(m.flags), m.modseq) for m in await store.messages(box.id)}

            def view(idx: Any) -> dict[int, tuple[frozenset[str], int]]:
                return {u: (m.flags, m.modseq) for u, m in idx.messages.items()}

            idx = await index()
            assert view(idx) == await rows() and len(idx.messages) == 30
            since = idx.synced
            uids = list(idx.messages)
            async with db.transaction() as uow:
                await store.set_flags(uow, box, uids[:3], ["\\Flagged"], mode="add")
                await store.set_flags(uow, box, uids[3:5], ["\\Deleted"], mode="add")
            async with db.transaction() as uow:
                gone = await store.expunge(uow, box)
                new = await store.append(uow, box, raw_message(2000))
            assert gone == uids[3:5]
            idx = await index()
            assert view(idx) == await rows() and list(idx.messages) == sorted(idx.messages)
            known = idx.changes_since(since)
            assert known is not None
            changed, vanished = known
            assert [m.uid for m in changed] == [m.uid for m in await store.messages(box.id, changed_since=since)]
            assert vanished == await store.vanished(box.id, since) == uids[3:5]
            assert new.uid in {m.uid for m in changed}
            assert idx.counts(0).deleted == 0 and idx.counts(0).messages == 29
            # a write that did not move the modseq (as an /api PATCH): its event drops the index
            t = store.model.table("mail").sa
            async with db.transaction() as uow:
                await uow.conn.execute(
                    t.update().where(t.c.mail_box_id == box.id, t.c.uid == uids[0]).values(seen=True)
                )
            old = idx.messages[uids[0]]
            indexes.observe(box.ref, Hint(uids[0], old.modseq, False, frozenset({*old.flags, "\\Seen"})))
            idx = await index()
            assert "\\Seen" in idx.messages[uids[0]].flags and view(idx) == await rows()
            # a delete event for a message the index still holds: it reads all again when next used
            async with db.transaction() as uow:
                await uow.conn.execute(t.delete().where(t.c.mail_box_id == box.id, t.c.uid == uids[6]))
            indexes.observe(box.ref, Hint(uids[6], None, True))
            idx = await index()
            assert uids[6] not in idx.messages and view(idx) == await rows()
            # \Recent: claimed once over a UID range, counted in SQL
            from portside.mail import manage

            assert await store.recent_count(box.id, new.uid) == 28
            async with db.transaction() as uow:
                claimed = await manage.claim_recent_range(uow, store.model, box.id, 1, new.uid - 1)
            assert len(claimed) == 27 and new.uid not in claimed
            async with db.transaction() as uow:
                assert await manage.claim_recent(uow, store.model, box.id, [uids[1], new.uid]) == {new.uid}
            assert await store.recent_uids(box.id) == [] and await store.recent_count(box.id, new.uid) == 0
        finally:
            await db.dispose()

    asyncio.run(main())
