"""The README's /live examples (Python and JavaScript) run as written against a real server."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from support import Server, create, new_user, schema_upload

ROOT = Path(__file__).resolve().parents[2]
TODO = """
Tables:
  - TableName: todo
    Permission: 561441
    DefaultPermission: 16256
    AccessGroups: [{Name: users, Permission: 2080768}]
    Columns:
      - {Name: title, DataType: varchar(200), ColumnType: label}
"""


def example(language: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- live-example:{language} -->\n```\w+\n(.*?)\n```", text, re.S)
    assert m, f"README has no {language} /live example"
    return m.group(1)


class Lines:
    """A child process's stdout, line by line, with timeouts."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.proc, self.q = proc, queue.Queue[str]()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.q.put(line.strip())

    def wait_for(self, prefix: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting {prefix!r}; got {seen}")


@pytest.fixture(scope="module")
def todo_server(sqlite_server: Server) -> tuple[Server, str]:
    _, admin = new_user(sqlite_server, "readme-admin")
    _, token = new_user(sqlite_server, "readme-user")
    with sqlite_server.client(admin) as c:
        assert c.post("/action/world/become_an_administrator").status_code == 200
        assert schema_upload(c, TODO, "todo.yaml").status_code == 200
    return sqlite_server, token


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_readme_live_example_prints_row_events(todo_server: tuple[Server, str], language: str) -> None:
    server, token = todo_server
    code = example(language).replace("ws://127.0.0.1:6336", server.url.replace("http://", "ws://"))
    if language == "python":
        args = [sys.executable, "-c", code]
    else:
        args = ["node", "--experimental-websocket", "-e", code]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "TOKEN": token}
    )
    try:
        out = Lines(proc)
        assert out.wait_for("session").split()[1]
        assert out.wait_for("response") == ("response 1 true" if language == "javascript" else "response 1 True")
        with server.client(token) as c:
            r = create(c, "todo", title="from the README test")
            assert r.status_code == 201, r.text
            ref = r.json()["data"]["id"]
        line = out.wait_for("create")
        assert line.split()[2] == ref and int(line.split()[1]) > 0
    finally:
        proc.kill()
        proc.wait(10)
