"""`portside` command: `portside serve [options]`. Options come from the settings table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
from collections.abc import Callable, Sequence

from portside import log, settings
from portside.errors import SchemaError, StartupError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="portside",
        description="Portside: schema files become a permission-aware JSON:API with realtime ports.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the server", description="Run the Portside server.")
    settings.add_arguments(serve)
    return p


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it comes with uvicorn[standard]): socket writes and polling cost far less."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one: every /live or Yjs socket, IMAP or FTP session holds a
    descriptor, and a default soft limit of 1024 would refuse connections long before `live.max_connections`.
    Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft >= hard:
        return soft
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command != "serve":
        parser().print_help()
        return 2
    try:
        conf = settings.resolve(args)
    except StartupError as exc:
        print(f"portside: {exc}", file=sys.stderr)
        return 2
    log.configure(conf.log_level)
    raise_fd_limit()
    os.umask(0o077)  # whatever the server writes (database, -wal/-shm, stored files) is its user's alone
    from portside.runtime import serve_forever

    try:
        with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(serve_forever(conf))
    except (StartupError, SchemaError) as exc:
        print(f"portside: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
