"""Rights are decided in auth/: no bitmask arithmetic on permission values anywhere else (core/masks.py holds
the values and their named compositions)."""

from __future__ import annotations

import re
from pathlib import Path

from portside.auth import access
from portside.auth.permissions import GUEST, Actor
from portside.core import masks
from portside.core.events import Grants

SRC = Path(__file__).resolve().parents[2] / "src" / "portside"
ALLOWED_PLACES = ("auth/", "core/masks.py")
RIGHTS = r"(?:PEEK|READ|CREATE|UPDATE|DELETE|EXECUTE|REFER|AUTH_EXECUTE|OWNER_SHIFT|GROUP_SHIFT|OWNER_ALL|GROUP_ALL"
RIGHTS += r"|ALLOW_ALL|DEFAULT_PERMISSION|ACTION_DEFAULT|ACTION_SCHEMA_DEFAULT)"
OPERAND = rf"(?:\bmasks\.\w+|\b{RIGHTS}\b|\bpermission\b|\bgrants\.permission\b|\bmask\b)"
BITWISE = r"(?:&|\||\^|<<|>>|~)"
PATTERNS = [
    re.compile(rf"{OPERAND}\s*{BITWISE}=?"),  # PEEK | READ, permission & UPDATE, mask << OWNER_SHIFT
    re.compile(rf"{BITWISE}=?\s*\(?\s*{OPERAND}"),  # x & PEEK, ~masks.READ, ... << GROUP_SHIFT
]


def offenders() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(ALLOWED_PLACES):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if any(p.search(code) for p in PATTERNS):
                found.append(f"{rel}:{n}: {line.strip()}")
    return found


def test_no_permission_bitmask_arithmetic_outside_auth_and_masks() -> None:
    assert offenders() == []


def test_the_check_catches_mask_arithmetic() -> None:
    for sample in (
        '"Permission": masks.AUTH_EXECUTE | masks.PEEK,',
        "MESSAGE_GRANTS = Grants(None, PEEK | READ)",
        '"DefaultPermission": (PEEK | READ | UPDATE | EXECUTE | REFER) << OWNER_SHIFT,',
        "if row.permission & UPDATE:",
        "if grants.permission >> 7 & 2:",
        "value = mask & ~masks.DELETE",
    ):
        assert any(p.search(sample) for p in PATTERNS), sample
    for fine in ("flags = os.O_WRONLY | os.O_CREAT", "MAX_BACKLOG = 1 << 20", "if op in LIKE | NOT_LIKE:"):
        assert not any(p.search(fine) for p in PATTERNS), fine


def test_named_compositions_equal_the_arithmetic_they_replace() -> None:
    assert masks.owner(masks.PEEK, masks.READ, masks.UPDATE, masks.EXECUTE, masks.REFER) == 107 << 7
    assert (
        masks.group(masks.PEEK) == 1 << 14
        and masks.group(masks.PEEK, masks.READ, masks.UPDATE, masks.EXECUTE) == 43 << 14
    )
    assert masks.combine(masks.AUTH_EXECUTE, masks.guest(masks.PEEK)) == (1 << 21) + 1
    assert masks.guest(masks.PEEK, masks.READ) == 3


def test_named_decisions() -> None:
    owner, other, admin = Actor(ref="u1", user_id=1), Actor(ref="u2", user_id=2), Actor(is_admin=True, ref="a")
    grants = Grants("u1", masks.owner(masks.READ, masks.UPDATE))
    assert access.may_set_topic_permission(owner, grants) and access.may_set_topic_permission(admin, grants)
    assert not access.may_set_topic_permission(other, grants) and not access.may_set_topic_permission(GUEST, grants)
    assert access.document_mode(owner, grants, table_allows_update=True) == "rw"
    assert access.document_mode(owner, grants, table_allows_update=False) == "ro"
    assert access.document_mode(other, grants, table_allows_update=True) == "ro"
    assert (
        access.may_administer(admin)
        and not access.may_administer(owner)
        and access.may_administer(owner, open_mode=True)
    )
    assert access.administers(admin) and not access.administers(owner)
    assert access.may(owner, masks.READ, grants) and not access.may(other, masks.READ, grants)
