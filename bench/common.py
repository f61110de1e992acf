"""Helpers every benchmark script shares: set-up HTTP calls and the RESULTS.md section writer."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HTTP_TIMEOUT = 30.0


def request(method: str, url: str, body: Any = None, token: str = "") -> tuple[int, Any]:
    """One JSON request with the standard library (no load-generator connection pools involved)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def expect(status: int, wanted: int | tuple[int, ...], what: str, body: Any) -> None:
    ok = status in wanted if isinstance(wanted, tuple) else status == wanted
    if not ok:
        raise RuntimeError(f"{what}: HTTP {status} (wanted {wanted}): {str(body)[:500]}")


def update_results(path: Path, heading: str, section: str) -> None:
    """Replace the `heading` section of RESULTS.md (from its heading to the next `## `), or append it."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip() + "\n\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    path.write_text(text.rstrip() + "\n")
