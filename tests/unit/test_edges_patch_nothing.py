"""Edges never patch services at run time (../shared/DESIGN.md: the runtime wires L3 operations into
services). Checked on the source of every edge module: no `attach()`, no assignment to a service hook, no
hook appended to a service's or the database's list, no attribute set on a service reached through `svc`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import portside

EDGES = ("http", "smtp", "imap", "ftp", "dav")
# attributes through which a service takes operations or callbacks
HOOKS = frozenset(
    {"seed", "write_back", "recheck", "refresh_actor", "may_subscribe", "publish", "after_batch", "after_commit"}
)
SERVICES = frozenset({"hub", "yjs", "certs", "bus", "db", "crud", "catalog", "config", "feeds", "websub"})


def edge_modules() -> list[Path]:
    root = Path(portside.__file__).parent
    return sorted(p for edge in EDGES if (root / edge).is_dir() for p in (root / edge).rglob("*.py"))


def attribute_chain(node: ast.expr) -> list[str]:
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        names.append(node.id)
    return names[::-1]


def patches(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "attach":
            found.append(f"line {node.lineno}: def attach")
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            chain = attribute_chain(target)
            if len(chain) >= 2 and (chain[-1] in HOOKS or (chain[0] == "svc" and chain[1] in SERVICES)):
                found.append(f"line {node.lineno}: {'.'.join(chain)} = ...")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            chain = attribute_chain(node.func)
            if node.func.attr in ("append", "insert", "extend", "add") and len(chain) >= 2 and chain[-2] in HOOKS:
                found.append(f"line {node.lineno}: {'.'.join(chain)}(...)")
    return found


def test_there_are_edge_modules() -> None:
    assert any(p.name == "yjs.py" for p in edge_modules())


@pytest.mark.parametrize("path", edge_modules(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_edge_module_patches_no_service(path: Path) -> None:
    assert patches(ast.parse(path.read_text(), str(path))) == []


def test_the_check_sees_a_patch() -> None:
    source = (
        "def attach(svc):\n"
        "    svc.yjs.seed = seed\n"
        "    svc.hub.may_subscribe = check\n"
        "    svc.db.after_commit.append(on_commit)\n"
        "    svc.yjs = None\n"
    )
    assert len(patches(ast.parse(source))) == 5
