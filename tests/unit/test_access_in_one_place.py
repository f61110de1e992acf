"""Rights are decided in auth/: no bitmask arithmetic on permission values anywhere else (core/masks.py holds
the values and their named compositions), and no module outside auth/ asks the mask model directly, tests
`is_admin` or special-cases identity tables: it calls the named decision in `auth.access`."""

from __future__ import annotations

import ast
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


# -- decisions by name: no module outside auth/ asks the mask model itself or special-cases identity tables --

DECIDES = frozenset({"allowed", "audience"})  # auth.permissions' raw mask checks: access.py names the decisions
IDENTITY_NAMES = frozenset({"user_account", "user_account_user_account_id_has_usergroup_usergroup_id"})
MODEL_PLACES = ("auth/", "core/")  # core builds the data model (owner columns, system tables) below auth
BOOLEAN_CONTEXTS = (ast.If, ast.BoolOp, ast.UnaryOp, ast.IfExp, ast.Assert, ast.While, ast.Compare, ast.Return)


def decision_offenders(sources: dict[str, str]) -> list[str]:
    """`allowed`/`audience` imported or called, `actor.is_admin` tested, or a table name of an identity table
    compared, in any module outside auth/ (and, for table names, core/)."""
    found = []
    for rel, text in sources.items():
        if rel.startswith("auth/"):
            continue
        tree = ast.parse(text)
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            line = getattr(node, "lineno", 0)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("portside.auth.permissions"):
                found += [f"{rel}:{line}: imports {a.name}" for a in node.names if a.name in DECIDES]
            elif isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
                if name in DECIDES and owner in ("", "permissions"):
                    found.append(f"{rel}:{line}: calls {name}")
            elif isinstance(node, ast.Attribute) and node.attr == "is_admin" and isinstance(node.ctx, ast.Load):
                if isinstance(parents.get(node), BOOLEAN_CONTEXTS):
                    found.append(f"{rel}:{line}: decides on is_admin")
            elif isinstance(node, ast.Compare) and not rel.startswith(MODEL_PLACES):
                consts: list[ast.expr] = [node.left, *node.comparators]
                for c in list(consts):
                    if isinstance(c, ast.Tuple | ast.List | ast.Set):
                        consts += c.elts
                if any(isinstance(c, ast.Constant) and c.value in IDENTITY_NAMES for c in consts):
                    found.append(f"{rel}:{line}: compares with an identity table name")
    return found


def test_rights_decisions_are_named_in_access() -> None:
    sources = {p.relative_to(SRC).as_posix(): p.read_text() for p in sorted(SRC.rglob("*.py"))}
    assert decision_offenders(sources) == []


def test_the_decision_check_catches_regressions() -> None:
    bad = {
        "realtime/x.py": "from portside.auth.permissions import READ, allowed\n",
        "realtime/y.py": "from portside.auth import permissions\nok = permissions.allowed(a, 1, g)\n",
        "actions/z.py": "def f(a, g):\n    return allowed(a, 2, g)\n",
        "http/p.py": "async def f(a):\n    if not a.is_admin:\n        raise X\n",
        "actions/c.py": 'def f(table):\n    if table == "user_account":\n        return 1\n',
        "realtime/r.py": 'def f(e):\n    return e.table in (M, "user_account")\n',
        "mail/m.py": "from portside.auth.permissions import audience\n",
    }
    for rel, text in bad.items():
        assert decision_offenders({rel: text}), rel
    fine = {
        "auth/q.py": 'from portside.auth.permissions import allowed\nx = a.is_admin or t == "user_account"\n',
        "core/model.py": 'clash = r.object != "user_account"\n',
        "feeds/s.py": "key = (a.user_id, a.group_ids, a.is_admin)\n",
        "http/c.py": 'allowed = cfg.get("live.allowed_origins")\n',
    }
    for rel, text in fine.items():
        assert not decision_offenders({rel: text}), rel


def test_named_decisions_of_the_row_layer_and_live() -> None:
    admin, user = Actor(is_admin=True, ref="a", user_id=1), Actor(ref="u2", user_id=2)
    assert access.owns_itself("user_account") and not access.owns_itself("todo")
    assert access.revokes_tokens("user_account", {"password": "x"})
    assert not access.revokes_tokens("user_account", {"password": "x", "auth_version": 3})
    assert not access.revokes_tokens("todo", {"password": "x"})
    assert access.deletion_heir(admin, "user_account", 5) == 1 and access.deletion_heir(admin, "todo", 5) is None
    try:
        access.deletion_heir(admin, "user_account", 1)
    except Exception as exc:
        assert getattr(exc, "kind", None) == "conflict"
    else:
        raise AssertionError("deleting one's own account must be refused")
    assert access.own_account_ref(user, "user_account", "mine") == "u2"
    assert access.own_account_ref(GUEST, "user_account", "mine") == "mine"
    assert access.own_account_ref(user, "todo", "mine") == "mine"
    assert access.changes_identity("user_account") and not access.changes_identity("todo")
    assert access.guest_action("user_account", "signin") and not access.guest_action("user_account", "become")
    readable = Grants("u2", masks.owner(masks.READ))
    assert access.may_read_event(user, readable) and not access.may_read_event(GUEST, readable)
    assert access.may_see(user, Grants("u2", masks.owner(masks.PEEK)))
    assert not access.may_see(GUEST, Grants("u2", masks.owner(masks.PEEK)))
    gate = Grants(None, masks.guest(masks.PEEK))
    assert access.may_follow_table(GUEST, gate) and not access.may_follow_table(GUEST, Grants(None, 0))
    assert access.event_readers(readable).owner == "u2"
