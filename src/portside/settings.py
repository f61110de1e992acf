"""Process settings, declared once: name, default, converter and help.

Every setting is a `portside serve --<name>` flag and a `PORTSIDE_<NAME>` environment variable. Values
from the command line win over the environment, which wins over the default. The CLI is generated from
SETTINGS, so adding a setting is one entry here.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portside.errors import StartupError


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    convert: Callable[[str], Any] = str
    repeatable: bool = False

    @property
    def env(self) -> str:
        return "PORTSIDE_" + self.name.upper().replace("-", "_")

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError("port must be 0..65535")
    return port


def _level(value: str) -> str:
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected debug, info, warning, error or critical")
    return level


def _positive(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise ValueError("must be a positive integer")
    return n


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(value: str) -> tuple[Network, ...]:
    """A comma-separated list of addresses or CIDR networks (`10.0.0.0/8, ::1`)."""
    out: list[Network] = []
    for part in value.replace(" ", ",").split(","):
        if part:
            try:
                out.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or CIDR network") from None
    return tuple(out)


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", "interface the HTTP listener binds to"),
    Setting("port", 6336, "HTTP port; 0 picks a free port (the real one is printed)", _port),
    Setting("data-dir", "./data", "data directory: SQLite file, schema_*.yaml|yml|json files, storage"),
    Setting(
        "database-url",
        "",
        "SQLAlchemy URL; default sqlite+aiosqlite:///<data-dir>/portside.db "
        "(also postgresql+asyncpg://... and mysql+asyncmy://...)",
    ),
    Setting(
        "schema",
        (),
        "schema file or folder to load, in addition to schema_* files in the data dir (repeatable; "
        "the environment variable takes a path list separated by the OS path separator)",
        repeatable=True,
    ),
    Setting("redis-url", "", "Redis URL for the event bus between nodes; empty = single node, in-process bus"),
    Setting(
        "jwt-secret",
        "",
        "HS256 secret for tokens; default: generated once and stored in the database (a flag is visible to every "
        "local user in the process list: prefer the environment variable or --jwt-secret-file)",
    ),
    Setting("jwt-secret-file", "", "file holding the HS256 secret (its first line), e.g. a container secret"),
    Setting(
        "tls-port",
        None,
        "HTTPS port (same routes and WebSockets as HTTP); 0 picks a free port; unset = no HTTPS",
        _port,
    ),
    Setting("hostname", "localhost", "host name whose certificate HTTPS serves when the client names no known host"),
    Setting("log-level", "INFO", "debug, info, warning or error", _level),
    Setting("event-history", 100_000, "change events kept in the event log for replay", _positive),
    Setting(
        "trusted-proxies",
        (),
        "comma-separated addresses or CIDR networks of reverse proxies (e.g. 127.0.0.1,10.0.0.0/8); only from "
        "these peers are X-Forwarded-For (the client is the right-most address that is not a trusted proxy) "
        "and X-Forwarded-Proto believed; unset = the TCP peer is the client",
        _networks,
    ),
)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 6336
    data_dir: str = "./data"
    database_url: str = ""
    schema: tuple[str, ...] = ()
    redis_url: str = ""
    jwt_secret: str = ""
    jwt_secret_file: str = ""
    tls_port: int | None = None
    hostname: str = "localhost"
    log_level: str = "INFO"
    event_history: int = 100_000
    trusted_proxies: tuple[Network, ...] = ()
    # hidden, tests only: a cheaper bcrypt cost (env TEST_BCRYPT_ROUNDS_ENV only; never a flag, never the default)
    test_bcrypt_rounds: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_path / 'portside.db').resolve()}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for s in SETTINGS:
        shown = s.default if s.default not in ("", (), None) else "unset"
        kwargs: dict[str, Any] = {"help": f"{s.help} [env {s.env}; default {shown}]", "dest": s.attr}
        if s.repeatable:
            kwargs.update(action="append", metavar=s.name.split("-")[-1].upper())
        else:
            kwargs.update(default=None, metavar=s.name.split("-")[-1].upper())
        parser.add_argument(f"--{s.name}", **kwargs)


TEST_BCRYPT_ROUNDS_ENV = "PORTSIDE_TEST_BCRYPT_ROUNDS"
TEST_BCRYPT_ROUNDS = range(4, 11)  # bcrypt's minimum up to just below the default cost (11)


def test_bcrypt_rounds(env: Mapping[str, str]) -> int | None:
    """The test-only bcrypt cost: None unless the variable is set; refused (StartupError) unless it is a whole
    number below the default cost, so it can only ever make hashing cheaper for a test run."""
    raw = env.get(TEST_BCRYPT_ROUNDS_ENV)
    if raw is None:
        return None
    value = raw.strip()
    if not (value.isascii() and value.isdigit() and int(value) in TEST_BCRYPT_ROUNDS):
        lo, hi = TEST_BCRYPT_ROUNDS[0], TEST_BCRYPT_ROUNDS[-1]
        raise StartupError(f"invalid value {raw!r} for {TEST_BCRYPT_ROUNDS_ENV}: a whole number from {lo} to {hi}")
    return int(value)


def resolve(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Merge command line, environment and defaults; errors name the source of the bad value."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw: Any = getattr(args, s.attr, None) if args is not None else None
        source = f"--{s.name}"
        if raw is None and s.env in env:
            raw = env[s.env]
            source = s.env
            if s.repeatable:
                raw = [p for p in raw.split(os.pathsep) if p]
        if raw is None:
            values[s.attr] = s.default
            continue
        try:
            if s.repeatable:
                values[s.attr] = tuple(s.convert(v) for v in raw)
            else:
                values[s.attr] = s.convert(raw)
        except ValueError as exc:
            raise StartupError(f"invalid value {raw!r} for {source}: {exc}") from None
    values["test_bcrypt_rounds"] = test_bcrypt_rounds(env)
    if values["jwt_secret_file"]:
        values["jwt_secret"] = _secret_from_file(values["jwt_secret_file"], bool(values["jwt_secret"]))
    return Settings(**values)


def _secret_from_file(path: str, also_given: bool) -> str:
    if also_given:
        raise StartupError("give the JWT secret once: --jwt-secret or --jwt-secret-file, not both")
    try:
        first = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise StartupError(f"cannot read --jwt-secret-file {path!r}: {exc.__class__.__name__}") from None
    secret = first[0].strip() if first else ""
    if not secret:
        raise StartupError(f"--jwt-secret-file {path!r} is empty")
    return secret


def documented_names() -> Sequence[str]:
    return [s.name for s in SETTINGS]
