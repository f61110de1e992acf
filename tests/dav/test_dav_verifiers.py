"""Third-party CalDAV verifiers against a running Portside (../shared/VERIFIERS.md §7).

caldav-server-tester (by the python-caldav maintainer) probes ~100 features; its profile of Portside is
recorded in tests/data/dav-server-tester.json. The test fails when any feature is `broken` or `ungraceful`,
or when a feature recorded as `full` is no longer full (a regression guard; re-record after an improvement).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dav_support import DavUser, running_dav_world
from support import PASSWORD, Server, World

CREDENTIALS = ("--caldav-password", PASSWORD, "--format", "hints")
RECORD = Path(__file__).parent.parent / "data" / "dav-server-tester.json"
TESTER = shutil.which("caldav-server-tester") or str(Path(sys.executable).parent / "caldav-server-tester")


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Server, World, dict[str, DavUser]]]:
    with running_dav_world("sqlite") as env:
        yield env


def test_caldav_server_tester_profile(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    assert os.path.exists(TESTER), "caldav-server-tester is a dev dependency (pyproject.toml)"
    owner = users["owner"]
    run = subprocess.run(
        [TESTER, "--caldav-url", srv.url + "/caldav/", "--caldav-username", owner.email, *CREDENTIALS],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = {k: v.get("support", v.get("value")) for k, v in ast.literal_eval(run.stdout).items()}
    bad = {k: v for k, v in found.items() if v in ("broken", "ungraceful")}
    assert bad == {}, bad
    recorded = json.loads(RECORD.read_text())["features"]
    regressed = {k: found.get(k) for k, v in recorded.items() if v == "full" and found.get(k) != "full"}
    assert regressed == {}, regressed
    for key in ("sync-token", "sync-token.delete", "search.recurrences.expanded.exception", "freebusy-query"):
        assert found[key] == "full", key
