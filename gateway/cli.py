"""The ``contact-gateway`` command line: serve, migrate, and the data tools.

Every subcommand loads settings first; a bad setting ends the command with
exit code 2 and a message naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gateway.settings import Settings, SettingsError, load_settings


def _cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.server import run_loop, serve_app

    if args.port is not None:
        settings = settings.replace(http_port=args.port)
    if args.host is not None:
        settings = settings.replace(http_host=args.host)
    extra = []
    if args.demo:
        from gateway.simulate.demo import demo_settings, setup_demo_traffic

        settings = demo_settings(settings.replace(demo=True))
        extra.append(setup_demo_traffic)
    workers = args.workers if args.workers is not None else settings.http_workers
    if workers < 0:
        raise SettingsError("setting 'http_workers': must be 0 (one per CPU core) or more")
    workers = workers or os.cpu_count() or 1
    if workers > 1:
        from gateway.server import serve_workers

        return serve_workers(settings, workers,
                             lambda s, index: create_app(s, extra_setup=extra if index == 0 else []))
    run_loop(serve_app(create_app(settings, extra_setup=extra), settings), settings)
    return 0


def _cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    """Play demo traffic against a running gateway through its real adapters and APIs."""
    from gateway.simulate.pbx import DemoPbx
    from gateway.simulate.traffic import AmiPhone, Phone, Simulator, WebhookPhone

    async def run() -> int:
        pbx = None
        phone: Phone | None = None
        async with Simulator(args.url or settings.base_url(), settings, None, interval=args.interval) as sim:
            if args.cti == "ami":
                pbx = DemoPbx(args.ami_username, args.ami_secret, host="127.0.0.1", port=args.pbx_port)
                await pbx.start()
                print(f"simulated PBX (AMI) listening on 127.0.0.1:{pbx.port}; waiting for the gateway to log in",
                      file=sys.stderr)
                await asyncio.wait_for(pbx.logged_in.wait(), 120)
                phone = AmiPhone(pbx)
            else:
                async def post(linked: str, body: object) -> None:
                    await sim._signed("/v1/channels/voice/events", "cti-webhook", f"sim-{linked}", body)
                phone = WebhookPhone(post)
            sim.phone = phone
            await sim.wait_ready()
            await sim.setup()
            await sim.run(rounds=args.rounds)
            print(f"played {sim.calls} calls", file=sys.stderr)
        if pbx is not None:
            await asyncio.sleep(args.linger)
            await pbx.close()
        return 0

    return asyncio.run(run())


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


def _with_pool(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    """Run ``work(pool)`` on a migrated database (the embedded one when no URL is configured)."""
    from gateway.db.migrate import migrate
    from gateway.db.pool import create_pool
    from gateway.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(settings.data_dir) if settings.embedded_postgres else None
    dsn = embedded.start() if embedded else settings.database_url.get()

    async def run() -> int:
        pool = await create_pool(dsn, min_size=1, max_size=4, command_timeout=max(settings.db_command_timeout, 600))
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
            return await work(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(run())
    finally:
        if embedded:
            embedded.stop()


def _cmd_seed(settings: Settings, args: argparse.Namespace) -> int:
    if not (args.customers or args.events):
        print("contact-gateway seed: say --customers N and/or --events M", file=sys.stderr)
        return 2
    from gateway.identity import IdentityHasher
    from gateway.seed.customers import seed_customers

    hasher = IdentityHasher(settings.identity_hmac_keys)
    start = time.perf_counter()

    def progress(done: int) -> None:
        if done % 100_000 == 0 or done == args.customers:
            print(f"  {done} customers ({done / (time.perf_counter() - start):.0f}/s)", file=sys.stderr)

    async def work(pool: Any) -> int:
        if args.customers:
            created = await seed_customers(pool, args.customers, args.seed, hasher, progress=progress)
            print(f"seeded {created} customers (seed {args.seed}) in {time.perf_counter() - start:.1f}s"
                  + (f"; {args.customers - created} existed already" if created < args.customers else ""))
        if args.events:
            from gateway.seed.events import seed_events

            began = time.perf_counter()

            def events_progress(done: int) -> None:
                if done % 1_000_000 < 50_000:
                    print(f"  {done} events ({done / (time.perf_counter() - began):.0f}/s)", file=sys.stderr)

            written = await seed_events(pool, args.events, args.seed, progress=events_progress)
            elapsed = time.perf_counter() - began
            print(f"seeded {written} events (seed {args.seed}) in {elapsed:.1f}s ({written / elapsed:.0f}/s)")
        return 0

    return _with_pool(settings, work)


def _cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.clock import SystemClock
    from gateway.customers.service import CustomerService, file_chunks
    from gateway.identity import IdentityHasher

    async def work(pool: Any) -> int:
        service = CustomerService(pool, IdentityHasher(settings.identity_hmac_keys), SystemClock())
        start = time.perf_counter()
        report = await service.import_ndjson(file_chunks(args.file))
        elapsed = time.perf_counter() - start
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=1))
        print(f"loaded {report.loaded}, rejected {report.rejected} of {report.lines} lines in {elapsed:.1f}s",
              file=sys.stderr)
        return 1 if report.rejected else 0

    return _with_pool(settings, work)


def _cmd_rehash(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.clock import SystemClock
    from gateway.customers import store
    from gateway.customers.service import CustomerService, file_chunks
    from gateway.identity import IdentityHasher

    hasher = IdentityHasher(settings.identity_hmac_keys)

    async def work(pool: Any) -> int:
        status = 0
        if args.file:
            report = await CustomerService(pool, hasher, SystemClock()).rehash(file_chunks(args.file))
            print(f"re-digested the identifiers of {report.loaded} customers under the newest key; "
                  f"{report.rejected} lines rejected")
            for err in report.errors:
                print(f"  line {err['line']}: {err['field']}: {err['message']}", file=sys.stderr)
            status = 1 if report.rejected else 0
        if args.prune_stale:
            removed = await store.prune_stale(pool, [hasher.key_version])
            print(f"removed {removed} identifiers digested under older keys")
        print(f"newest key version {hasher.key_version}; identifiers by key version:")
        stale = 0
        for version, origin, n in await store.key_version_counts(pool):
            current = version == hasher.key_version
            stale += 0 if current else n
            print(f"  {version:>5} {origin:<8} {n:>10}{'  (newest key)' if current else ''}")
        print("no identifier needs an older key: older keys may be dropped" if not stale
              else f"{stale} identifiers still need an older key")
        return status

    return _with_pool(settings, work)


def _read_password(args: argparse.Namespace) -> str:
    """The new password: one line from stdin with ``--password-stdin``, else asked twice on the terminal."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("new password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("contact-gateway: the passwords differ")
    return first


def _cmd_user(settings: Settings, args: argparse.Namespace) -> int:
    import getpass as _getpass

    from gateway.clock import SystemClock
    from gateway.errors import GatewayError
    from gateway.users.service import UserService, password_hasher

    actor = f"cli:{_getpass.getuser()}"

    async def work(pool: Any) -> int:
        sessions = None
        client = None
        if settings.redis_url:  # so that disable/reset end live sessions at once (the DB check does too)
            import redis.asyncio as aioredis

            from gateway.users.sessions import SessionStore

            client = aioredis.Redis.from_url(settings.redis_url.get())
            sessions = SessionStore(client, b"", settings.sessions, SystemClock())
        service = UserService(pool, password_hasher(settings.sessions), SystemClock(), sessions)
        try:
            if args.user_command == "add":
                user = await service.add(args.name, args.display_name or args.name, args.role, args.agent_id,
                                         _read_password(args), actor=actor)
                print(f"added {user.role} {user.name}" + (f" (agent id {user.agent_id})" if user.agent_id else ""))
            elif args.user_command == "disable":
                await service.set_disabled(args.name, True, actor=actor)
                print(f"disabled {args.name}; their sessions have ended")
            elif args.user_command == "enable":
                await service.set_disabled(args.name, False, actor=actor)
                print(f"enabled {args.name}")
            elif args.user_command == "reset":
                await service.reset_password(args.name, _read_password(args), actor=actor)
                print(f"new password set for {args.name}; their sessions have ended")
            else:
                for u in await service.list():
                    print(f"{u.name:<24} {u.role:<11} {u.agent_id or '-':<10} "
                          f"{'disabled' if u.disabled else 'enabled':<9} {u.display_name}")
            return 0
        except GatewayError as exc:
            print(f"contact-gateway user: {exc.detail or exc.title}", file=sys.stderr)
            for err in exc.extensions.get("errors", []):
                print(f"  {err['field']}: {err['message']}", file=sys.stderr)
            return 1
        finally:
            if client is not None:
                await client.aclose()

    return _with_pool(settings, work)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contact-gateway", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP gateway")
    serve.add_argument("--host", help="bind address (setting http_host)")
    serve.add_argument("--port", type=int, help="port (setting http_port)")
    serve.add_argument("--demo", action="store_true", help="seed demo data when the database is empty")
    serve.add_argument("--workers", type=int, help="processes sharing the port; 0: one per core (setting "
                       "http_workers)")
    serve.set_defaults(func=_cmd_serve)
    sim = sub.add_parser("simulate", help="play demo traffic (calls, logins, transfers, emails) at a gateway")
    sim.add_argument("--url", default=None, help="the gateway's base URL (default: from settings)")
    sim.add_argument("--rounds", type=int, default=None, help="how many scenarios to play (default: forever)")
    sim.add_argument("--interval", type=float, default=8.0, help="seconds between scenarios")
    sim.add_argument("--cti", choices=("webhook", "ami"), default="webhook",
                     help="how calls arrive: the signed generic CTI webhook, or a simulated PBX the gateway's AMI "
                          "client connects to ([ami] host/port/username/secret must point at it)")
    sim.add_argument("--pbx-port", type=int, default=5038, help="with --cti ami: the port to listen on")
    sim.add_argument("--ami-username", default="contact-gateway", help="with --cti ami: the AMI user to accept")
    sim.add_argument("--ami-secret", default="", help="with --cti ami: the AMI secret to accept")
    sim.add_argument("--linger", type=float, default=45.0, help="with --cti ami: seconds to let calls finish")
    sim.set_defaults(func=_cmd_simulate)
    mig = sub.add_parser("migrate", help="apply pending database migrations")
    mig.set_defaults(func=_cmd_migrate)
    seed = sub.add_parser("seed", help="create deterministic demo customers and contact histories")
    seed.add_argument("--customers", type=int, default=0, help="how many customers to add")
    seed.add_argument("--events", type=int, default=0,
                      help="how many contact events to add, over the customers in the database")
    seed.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same data")
    seed.set_defaults(func=_cmd_seed)
    imp = sub.add_parser("import", help="load customer documents from an NDJSON file")
    imp.add_argument("file", help="NDJSON file, one customer document per line")
    imp.set_defaults(func=_cmd_import)
    rehash = sub.add_parser("rehash", help="key rotation: re-digest identifiers under the newest key")
    rehash.add_argument("file", nargs="?", help="core-banking NDJSON extract with the raw identifiers")
    rehash.add_argument("--prune-stale", action="store_true",
                        help="delete identifiers still digested under older keys")
    rehash.set_defaults(func=_cmd_rehash)
    user = sub.add_parser("user", help="people's accounts: add, disable, enable, reset, list")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="add a user")
    add.add_argument("name", help="login name: lower-case letters, digits, '.', '_', '-'")
    add.add_argument("--role", required=True, choices=["agent", "supervisor", "admin"])
    add.add_argument("--agent-id", help="the agent's CTI id (坐席号); required for agents")
    add.add_argument("--display-name", help="name shown on the pages (default: the login name)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    for name, text in (("disable", "disable a user and end their sessions"), ("enable", "enable a user again")):
        p = user_sub.add_parser(name, help=text)
        p.add_argument("name")
    reset = user_sub.add_parser("reset", help="set a new password and end the user's sessions")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    user_sub.add_parser("list", help="list users")
    user.set_defaults(func=_cmd_user)
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
