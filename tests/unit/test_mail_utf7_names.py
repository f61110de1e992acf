"""Which stored mailbox names the one-time rewrite takes for an earlier version's modified UTF-7, and where
colliding ones go (mail/utf7_names.py; the rewrite itself runs against the three databases in
tests/imap/test_imap_old_names.py)."""

from __future__ import annotations

import pytest

from portside.mail.utf7_names import legacy, plan


@pytest.mark.parametrize(
    ("stored", "unicode"),
    [
        ("Entw&APw-rfe", "Entwürfe"),
        ("~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語"),  # RFC 3501's example
        ("INBOX/Entw&APw-rfe", "INBOX/Entwürfe"),
        ("A&-B&AOQ-", "A&Bä"),  # a whole name in modified UTF-7: its `&-` is an `&` too
        ("&2D3czA-", "📌"),  # a surrogate pair
    ],
)
def test_old_modified_utf7_names_are_decoded(stored: str, unicode: str) -> None:
    assert legacy(stored) == unicode


@pytest.mark.parametrize(
    "stored",
    [
        "Drafts",
        "A&B",  # not modified UTF-7: a literal name of today
        "AT&T-Mail",  # `&T-` decodes to nothing
        "A&-B",  # only `&-`: the old form of "A&B" or the literal "A&-B" of today; nothing tells which
        "Tom &- Jerry",
        "Käse&APw-",  # raw non-ASCII: no modified UTF-7 encoder wrote it
        "&AOQ-&APw-",  # split runs: an encoder writes `&AOQA,A-`, and a rev1 client would see its name change
        "&AOR-",  # stray bits after the last character
        "&AAA-",  # decodes to a control character
        "&4AA-",  # a private-use character
        "x&AGE-",  # encoded ASCII
        "x&Jjo",  # unterminated
    ],
)
def test_other_names_stay(stored: str) -> None:
    assert legacy(stored) is None


def test_no_collision_renames_in_place() -> None:
    assert plan(["INBOX", "Sent", "Entw&APw-rfe", "Entw&APw-rfe/Alt", "A&B"]) == (
        {"Entw&APw-rfe": "Entwürfe", "Entw&APw-rfe/Alt": "Entwürfe/Alt"},
        [],
    )


def test_a_collision_keeps_the_old_box_and_its_children_apart() -> None:
    renames, collided = plan(["Entwürfe", "Entwürfe/Alt", "Entw&APw-rfe", "Entw&APw-rfe/Alt", "Entwürfe (old)"])
    assert renames == {"Entw&APw-rfe": "Entwürfe (old 2)", "Entw&APw-rfe/Alt": "Entwürfe (old 2)/Alt"}
    assert collided == ["Entw&APw-rfe"]


def test_a_child_colliding_on_its_own() -> None:
    renames, collided = plan(["Entwürfe/Alt", "Entw&APw-rfe", "Entw&APw-rfe/Alt", "Entw&APw-rfe/Alt/&AOQ-"])
    assert renames == {
        "Entw&APw-rfe": "Entwürfe",
        "Entw&APw-rfe/Alt": "Entwürfe/Alt (old)",
        "Entw&APw-rfe/Alt/&AOQ-": "Entwürfe/Alt (old)/ä",
    }
    assert collided == ["Entw&APw-rfe/Alt"]


def test_no_free_name_leaves_it_as_stored() -> None:
    long = "x" * 95
    assert plan([long + "&APw-", long + "ü"]) == ({}, [])
