"""`portside` command: `portside serve [options]`. Options come from the settings table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

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


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (it comes with uvicorn[standard]): faster sockets and scheduling."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - e.g. Windows
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


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
    from portside.runtime import serve_forever

    try:
        with contextlib.suppress(KeyboardInterrupt):
            run(serve_forever(conf))
    except (StartupError, SchemaError) as exc:
        print(f"portside: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
