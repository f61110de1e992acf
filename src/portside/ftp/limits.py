"""How many FTP sessions may be open: in all (`ftp.max_sessions`) and from one address
(`ftp.max_sessions_per_address`), counted over both listeners (plain/explicit TLS and implicit TLS).

The limits are read by each new connection, so a changed key applies to the next connection without a
restart; sessions already open are never cut. A refused connection gets one `421` line that says which
limit it met, and is closed before any command is read.
"""

from __future__ import annotations

import threading

DEFAULT_MAX_SESSIONS = 100
DEFAULT_MAX_PER_ADDRESS = 20
LIMIT_MAX = 100_000


class Ticket:
    """One admitted session; released exactly once, whichever of its closing paths runs first."""

    def __init__(self, gate: SessionGate, address: str):
        self.gate, self.address = gate, address
        self._held = True

    def release(self) -> None:
        with self.gate.lock:
            if self._held:
                self._held = False
                self.gate.leave(self.address)


class SessionGate:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.max_sessions = DEFAULT_MAX_SESSIONS
        self.max_per_address = DEFAULT_MAX_PER_ADDRESS
        self.total = 0
        self.by_address: dict[str, int] = {}

    def configure(self, max_sessions: int, max_per_address: int) -> None:
        self.max_sessions, self.max_per_address = max_sessions, max_per_address

    def enter(self, address: str) -> Ticket | str:
        """A ticket for a new session from `address`, or the 421 reply that refuses it."""
        with self.lock:
            if self.total >= self.max_sessions:
                return f"421 Too many FTP sessions: this server allows {self.max_sessions} at a time. Try again later."
            if self.by_address.get(address, 0) >= self.max_per_address:
                return (
                    f"421 Too many FTP sessions from your address: at most {self.max_per_address} at a time. "
                    "Close one and try again."
                )
            self.total += 1
            self.by_address[address] = self.by_address.get(address, 0) + 1
        return Ticket(self, address)

    def leave(self, address: str) -> None:
        """(called with the lock held, by `Ticket.release`)"""
        self.total -= 1
        left = self.by_address.get(address, 0) - 1
        if left > 0:
            self.by_address[address] = left
        else:
            self.by_address.pop(address, None)


def parse_limit(value: str | None, key: str, default: int) -> int:
    text = (value or "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= LIMIT_MAX):
        raise ValueError(f"{key}: {value!r} is not a number of sessions from 1 to {LIMIT_MAX}")
    return int(text)
