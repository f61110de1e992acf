"""Dovecot's imaptest scripted conformance tests against Portside (implicit TLS, `ssl=any-cert`): every
group passes, as it does against Dovecot 2.3.19 (../shared/tools/imaptest/README.md: 71 groups, 0 failed).
The tool is used in place from the shared tools folder, never copied into the project."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imap_support import BOB, BOB_PW, ImapWorld, running_imap_world


def _imaptest() -> Path:
    """../shared/tools/imaptest beside the checkout (any clone depth), or $PORTSIDE_IMAPTEST."""
    if os.environ.get("PORTSIDE_IMAPTEST"):
        return Path(os.environ["PORTSIDE_IMAPTEST"])
    for parent in [*Path(__file__).resolve().parents, Path("/work")]:
        if (parent / "shared" / "tools" / "imaptest" / "bin" / "imaptest").exists():
            return parent / "shared" / "tools" / "imaptest"
    return Path("/nonexistent/imaptest")


IMAPTEST = _imaptest()

pytestmark = pytest.mark.skipif(
    not (IMAPTEST / "bin" / "imaptest").exists(), reason="imaptest is not at ../shared/tools/imaptest"
)


@pytest.fixture(scope="module")
def world() -> Iterator[ImapWorld]:
    with running_imap_world() as w:
        yield w


def test_imaptest_scripted_groups_all_pass(world: ImapWorld) -> None:
    r = subprocess.run(
        [
            str(IMAPTEST / "bin" / "imaptest"),
            "host=127.0.0.1",
            f"port={world.port('imaps')}",
            "ssl=any-cert",
            f"user={BOB}",
            f"pass={BOB_PW}",
            f"test={IMAPTEST / 'tests'}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = r.stdout + r.stderr
    summary = re.search(r"(\d+) test groups: (\d+) failed, (\d+) skipped", out)
    assert summary is not None, out[-3000:]
    groups, failed, skipped = (int(g) for g in summary.groups())
    assert groups >= 71 and failed == 0 and skipped == 0, out[-6000:]
    assert r.returncode == 0, out[-3000:]
    assert re.search(r"base protocol: 0/\d+ individual commands failed", out), out[-3000:]
    assert re.search(r"extensions: 0/\d+ individual commands failed", out), out[-3000:]
