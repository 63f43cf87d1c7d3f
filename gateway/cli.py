"""The ``contact-gateway`` command line: serve, migrate, and the data tools.

Every subcommand loads settings first; a bad setting ends the command with
exit code 2 and a message naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from gateway.settings import Settings, SettingsError, load_settings


def _cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.server import serve_app

    if args.port is not None:
        settings = settings.replace(http_port=args.port)
    if args.host is not None:
        settings = settings.replace(http_host=args.host)
    if args.demo:
        settings = settings.replace(demo=True)
    asyncio.run(serve_app(create_app(settings), settings))
    return 0


def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.db.migrate import migrate_dsn
    from gateway.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(settings.data_dir) if settings.embedded_postgres else None
    dsn = embedded.start() if embedded else settings.database_url.get()
    try:
        applied = asyncio.run(migrate_dsn(dsn))
    finally:
        if embedded:
            embedded.stop()
    print(f"applied migrations: {applied}" if applied else "schema is current")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contact-gateway", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP gateway")
    serve.add_argument("--host", help="bind address (setting http_host)")
    serve.add_argument("--port", type=int, help="port (setting http_port)")
    serve.add_argument("--demo", action="store_true", help="seed demo data when the database is empty")
    serve.set_defaults(func=_cmd_serve)
    mig = sub.add_parser("migrate", help="apply pending database migrations")
    mig.set_defaults(func=_cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"contact-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    from gateway.logs import configure_logging

    configure_logging(settings, stream=sys.stderr)
    return int(args.func(settings, args))
