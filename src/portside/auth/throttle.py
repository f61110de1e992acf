"""Password-guessing protection that nobody else can turn into a lockout.

Every protocol that checks a password (HTTP sign-in now; SMTP AUTH, IMAP LOGIN, FTP later) asks the same
`LoginThrottle` with (account, client address), never with a request. Three rules, all over a sliding
window (`Limits.window`, 5 minutes):

1. per (account, address): `per_pair` (10) wrong passwords, then that address waits for that account;
2. per address, across accounts: `per_address` (50) wrong passwords (password spraying), then it waits;
3. per account, from all addresses: once `account_soft` (10) wrong passwords were tried, an address that
   itself failed within the window (on any account) must wait between attempts on that account, doubling
   from 1 s per further failure up to `backoff_max` (60 s). An address with no recent failures is never
   held back by it, so an attacker elsewhere cannot keep the owner's correct password out.

Attempts that are refused with 429 are not counted (nothing was checked). An attempt counts as a failure
from the moment it starts, so concurrent guesses cannot all slip past the limits while the password
hash is being checked; a correct password takes its own count back and clears its (account, address)
failures. IPv6 clients are counted per /64, the block one subscriber gets.

State is per process; in a cluster (Redis configured) every node hands its attempts to its peers through
`share` and applies theirs with `remote` (the runtime wires both to a Redis channel), so a guesser spreading
attempts over the nodes meets the same limits as on one node, a few milliseconds of propagation aside.

Checks of one (account, address) run one at a time (`turn`): clients that open many sessions at once with
the right password (lftp `--parallel`, FileZilla, IMAP clients with several connections) would otherwise
look like concurrent guesses, and concurrent guesses gain nothing from running side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from portside.errors import Kind, TooManyRequests


@dataclass(frozen=True)
class Limits:
    window: float = 300.0
    per_pair: int = 10
    per_address: int = 50
    account_soft: int = 10
    backoff_max: float = 60.0


def address_key(address: str) -> str:
    """The unit an address is counted in: an IPv4 address, an IPv6 /64, or the text as given."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return address.strip()
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def account_key(account: str) -> str:
    return account.strip().lower()


class _Series:
    """Failure times per key within the window; at most `max_keys` keys (the oldest key goes first)."""

    def __init__(self, window: float, cap: int, max_keys: int):
        self.window, self.cap, self.max_keys = window, cap, max_keys
        self._hits: dict[str, deque[float]] = {}

    def recent(self, key: str, now: float) -> deque[float]:
        q = self._hits.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._hits[key]
        return q

    def add(self, key: str, now: float) -> None:
        q = self._hits.get(key)
        if q is None:
            if len(self._hits) >= self.max_keys:
                self._hits.pop(next(iter(self._hits)))
            q = self._hits[key] = deque(maxlen=self.cap)
        q.append(now)

    def take_back(self, key: str, stamp: float) -> None:
        q = self._hits.get(key)
        if q is not None and stamp in q:
            q.remove(stamp)

    def clear(self, key: str) -> None:
        self._hits.pop(key, None)


class Attempt:
    """One password check in progress: counted as a failure until `succeeded()` says otherwise."""

    def __init__(self, throttle: LoginThrottle, account: str, address: str, stamp: float):
        self._throttle, self._account, self._address, self._stamp = throttle, account, address, stamp

    def succeeded(self) -> None:
        self._throttle._succeeded(self._account, self._address, self._stamp)


Share = Callable[[dict[str, object]], None]
FAILED, SUCCEEDED = "fail", "ok"


class LoginThrottle:
    def __init__(self, limits: Limits | None = None, max_keys: int = 100_000):
        self.limits = lim = limits or Limits()
        self._pair = _Series(lim.window, lim.per_pair, max_keys)
        self._address = _Series(lim.window, lim.per_address, max_keys)
        self._account = _Series(lim.window, max(1000, lim.account_soft + 64), max_keys)
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}  # (account, address) -> lock, holders + waiters
        # cluster: this node's attempts go to `share`; a peer's attempt (its wall-clock stamp) -> our stamp
        self.share: Share | None = None
        self._peer_stamps: OrderedDict[tuple[str, str, str, float], float] = OrderedDict()

    @asynccontextmanager
    async def turn(self, account: str, address: str) -> AsyncIterator[None]:
        """One password check at a time per (account, address); the entry goes when nobody uses it."""
        key = f"{account_key(account)}\n{address_key(address)}"
        lock, users = self._turns.get(key, (asyncio.Lock(), 0))
        self._turns[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._turns[key]
            if users <= 1:
                del self._turns[key]
            else:
                self._turns[key] = (lock, users - 1)

    def wait(self, account: str, address: str) -> float:
        """Seconds this address must wait before trying a password for this account (0: go ahead)."""
        lim, now = self.limits, time.monotonic()
        acc, addr = account_key(account), address_key(address)
        waits = [0.0]
        pair = self._pair.recent(f"{acc}\n{addr}", now)
        if len(pair) >= lim.per_pair:
            waits.append(pair[-lim.per_pair] + lim.window - now)
        mine = self._address.recent(addr, now)
        if len(mine) >= lim.per_address:
            waits.append(mine[-lim.per_address] + lim.window - now)
        failures = len(self._account.recent(acc, now))
        if mine and failures >= lim.account_soft:
            gap = min(lim.backoff_max, 2.0 ** (failures - lim.account_soft))
            waits.append(mine[-1] + gap - now)
        return max(waits)

    def begin(self, account: str, address: str) -> Attempt:
        """Start a password check: TooManyRequests (with Retry-After) if this address must wait first."""
        wait = self.wait(account, address)
        if wait > 0:
            raise TooManyRequests(
                "too many failed attempts; try again later", kind=Kind.RATE_LIMITED, retry_after=max(1, math.ceil(wait))
            )
        acc, addr, now = account_key(account), address_key(address), time.monotonic()
        self._record(acc, addr, now)
        self._tell(FAILED, acc, addr, now)
        return Attempt(self, acc, addr, now)

    def _record(self, acc: str, addr: str, now: float) -> None:
        self._pair.add(f"{acc}\n{addr}", now)
        self._address.add(addr, now)
        self._account.add(acc, now)

    def _succeeded(self, acc: str, addr: str, stamp: float) -> None:
        self._pair.clear(f"{acc}\n{addr}")
        self._address.take_back(addr, stamp)
        self._account.take_back(acc, stamp)
        self._tell(SUCCEEDED, acc, addr, stamp)

    def _tell(self, kind: str, acc: str, addr: str, stamp: float) -> None:
        if self.share is None:
            return
        wall = time.time() - (time.monotonic() - stamp)  # the attempt's start on the wall clock
        with contextlib.suppress(Exception):  # a broken link to the peers must never fail a login
            self.share({"kind": kind, "account": acc, "address": addr, "at": round(wall, 3), "id": stamp})

    def remote(self, note: dict[str, object], origin: str) -> None:
        """A peer node's attempt (`share`'s note, from node `origin`): counted here as if made here. Notes
        that are malformed, from the future or older than the window are ignored."""
        kind, acc, addr, at = note.get("kind"), note.get("account"), note.get("address"), note.get("at")
        ident = note.get("id")  # the attempt, as its node names it: its failure and success carry the same
        if not (isinstance(acc, str) and isinstance(addr, str) and isinstance(at, int | float)):
            return
        if not isinstance(ident, int | float):
            return
        if len(acc) > 512 or len(addr) > 128:
            return
        age = time.time() - float(at)
        if not -5.0 <= age <= self.limits.window:
            return
        key = (origin, acc, addr, float(ident))
        if kind == FAILED:
            stamp = time.monotonic() - max(age, 0.0)
            self._peer_stamps[key] = stamp
            while len(self._peer_stamps) > 10_000:
                self._peer_stamps.popitem(last=False)
            self._record(acc, addr, stamp)
        elif kind == SUCCEEDED:
            self._pair.clear(f"{acc}\n{addr}")
            mine = self._peer_stamps.pop(key, None)
            if mine is not None:
                self._address.take_back(addr, mine)
                self._account.take_back(acc, mine)
