"""The application factory. Importing this module opens nothing and reads no configuration.

``create_app(settings)`` assembles the app from ``setup_*`` steps. Long-lived
resources are opened and closed by one cleanup context each, in dependency
order: embedded stores (only when no URL is configured) → PostgreSQL pool
(migrations applied at start when configured) → Redis client → the services
built on them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp_jinja2
import jinja2
import redis.asyncio as aioredis
import structlog
from aiohttp import web

from adapters.ami_client import setup_ami
from adapters.imap_poller import setup_imap
from gateway import keys
from gateway.clock import Clock, SystemClock
from gateway.db import pool as dbpool
from gateway.db.migrate import migrate
from gateway.embedded import EmbeddedStores
from gateway.events.ingest import Ingestor
from gateway.events.partitions import PartitionManager
from gateway.events.publish import Publisher
from gateway.identity import IdentityHasher
from gateway.metrics import create_metrics
from gateway.middleware import http_middleware
from gateway.openapi import ApiRegistry
from gateway.settings import PROJECT_ROOT, Settings
from gateway.views import agent as agent_views
from gateway.views import console as console_views
from gateway.views import customers as customer_views
from gateway.views import digital, ops, voice
from gateway.views import email as email_views
from gateway.views import events as events_views
from gateway.views import login as login_views
from gateway.views import screenpop as screenpop_views
from gateway.views.access import policy_middleware

log = structlog.get_logger("gateway.app")

TEMPLATES_DIR = PROJECT_ROOT / "templates"


def setup_embedded_stores(app: web.Application) -> None:
    settings = app[keys.SETTINGS]
    if settings.database_url:
        app[keys.DATABASE_DSN] = settings.database_url.get()
    if settings.redis_url:
        app[keys.REDIS_URL] = settings.redis_url.get()
    if not (settings.embedded_postgres or settings.embedded_redis):
        return

    async def embedded_ctx(app: web.Application) -> AsyncIterator[None]:
        stores = EmbeddedStores(settings.data_dir, postgres=settings.embedded_postgres,
                                redis=settings.embedded_redis)
        loop = asyncio.get_running_loop()
        pg_url, redis_url = await loop.run_in_executor(None, stores.start)
        if pg_url:
            app[keys.DATABASE_DSN] = pg_url
        if redis_url:
            app[keys.REDIS_URL] = redis_url
        yield
        await loop.run_in_executor(None, stores.stop)

    app.cleanup_ctx.append(embedded_ctx)


def setup_postgres(app: web.Application) -> None:
    settings = app[keys.SETTINGS]
    dbpool.SLOW_QUERY_MS = settings.slow_query_ms

    async def postgres_ctx(app: web.Application) -> AsyncIterator[None]:
        dsn = app[keys.DATABASE_DSN]
        pool = await dbpool.create_pool(dsn, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
                                        command_timeout=settings.db_command_timeout)
        if settings.migrate_on_start:
            async with pool.acquire() as conn:
                await migrate(conn)
        app[keys.DB] = pool
        yield
        await pool.close()

    app.cleanup_ctx.append(postgres_ctx)


def setup_redis(app: web.Application) -> None:
    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        # A blocking pool: a burst (a pop for every ringing call of a 500-event batch) waits for a free
        # connection instead of failing with "too many connections" (redis-py's default pool).
        pool = aioredis.BlockingConnectionPool.from_url(
            app[keys.REDIS_URL],
            max_connections=app[keys.SETTINGS].redis_pool_max,
            timeout=2.0,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            health_check_interval=10,
            decode_responses=False,
        )
        client = aioredis.Redis.from_pool(pool)
        app[keys.REDIS] = client
        yield
        await client.aclose()

    app.cleanup_ctx.append(redis_ctx)


def setup_customers(app: web.Application) -> None:
    """The identity hasher (no I/O) and the customer service on the PostgreSQL pool."""
    from gateway.customers.service import CustomerService

    app[keys.IDENTITY] = IdentityHasher(app[keys.SETTINGS].identity_hmac_keys)

    async def customers_ctx(app: web.Application) -> AsyncIterator[None]:
        app[keys.CUSTOMERS] = CustomerService(app[keys.DB], app[keys.IDENTITY], app[keys.CLOCK])
        yield

    app.cleanup_ctx.append(customers_ctx)


DEMO_CUSTOMERS = 300
DEMO_SEED = 2026
DEMO_EVENTS = 20_000


def setup_demo(app: web.Application) -> None:
    """With ``settings.demo``: seed a small demo set of customers and their contact histories when the
    database has no customers.

    Runs after the PostgreSQL context, so migrations are applied first.
    """
    if not app[keys.SETTINGS].demo:
        return

    async def demo_ctx(app: web.Application) -> AsyncIterator[None]:
        from gateway.customers.store import has_customers
        from gateway.seed.customers import seed_customers
        from gateway.seed.events import seed_events

        pool = app[keys.DB]
        if not await has_customers(pool):
            now = app[keys.CLOCK].now()
            created = await seed_customers(pool, DEMO_CUSTOMERS, DEMO_SEED, app[keys.IDENTITY], now=now)
            events = await seed_events(pool, DEMO_EVENTS, DEMO_SEED, now=now)
            log.info("demo.seeded", customers=created, events=events)
        yield

    app.cleanup_ctx.append(demo_ctx)


def setup_ingest(app: web.Application) -> None:
    """The event sink: partitions ahead of time, the Redis publisher, the group-commit ingestor."""
    settings = app[keys.SETTINGS]

    async def ingest_ctx(app: web.Application) -> AsyncIterator[None]:
        pool, clock = app[keys.DB], app[keys.CLOCK]
        partitions = PartitionManager(pool, clock)
        await partitions.load()
        await partitions.ensure_ahead()
        maintenance = asyncio.create_task(partitions.maintain(), name="partition-maintenance")
        publisher = Publisher(app[keys.REDIS], app[keys.METRICS])
        publisher.start()
        ingestor = Ingestor(pool, app[keys.IDENTITY], clock, app[keys.METRICS], publisher,
                            partitions, workers=settings.ingest_workers, max_batch=settings.ingest_max_batch,
                            window_ms=settings.ingest_commit_window_ms)
        ingestor.start()
        app[keys.INGEST] = ingestor
        app[keys.PUBLISHER] = publisher
        yield
        await ingestor.stop()
        await publisher.stop()
        maintenance.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await maintenance

    app.cleanup_ctx.append(ingest_ctx)


def setup_screenpop(app: web.Application) -> None:
    """The summary service (alert rules loaded now: a bad rule stops the start) and the pop hub."""
    from gateway.screenpop.push import PopHub
    from gateway.screenpop.rules import load_rules
    from gateway.screenpop.service import ScreenPopService

    settings = app[keys.SETTINGS]
    path = PROJECT_ROOT / settings.screenpop.alert_rules_file
    rules = load_rules(path)

    async def screenpop_ctx(app: web.Application) -> AsyncIterator[None]:
        service = ScreenPopService(app[keys.DB], app[keys.REDIS], app[keys.CUSTOMERS], rules, app[keys.CLOCK],
                                   settings)
        hub = PopHub(app[keys.REDIS], service)
        app[keys.SCREENPOP] = service
        app[keys.POP_HUB] = hub
        service.audit_writer.start()
        if settings.screenpop.push:
            hub.start()
            ingestor = app.get(keys.INGEST)
            hub.prefetching = settings.screenpop.early_pop
            if settings.screenpop.early_pop and isinstance(ingestor, Ingestor):
                ingestor.on_ringing = hub.ringing
            if keys.PUBLISHER in app:
                app[keys.PUBLISHER].on_published = hub.committed
        yield
        await hub.stop()
        await service.stop()

    app.cleanup_ctx.append(screenpop_ctx)
def setup_users(app: web.Application) -> None:
    """Accounts (PostgreSQL), sessions and login throttling (Redis). Runs after the Redis context."""
    import secrets

    from gateway.users.service import UserService, password_hasher
    from gateway.users.sessions import LoginThrottle, SessionStore

    settings = app[keys.SETTINGS]
    # Without a configured secret, one per start: sessions then end when the gateway restarts.
    secret = settings.session_secret.get().encode() if settings.session_secret else secrets.token_bytes(32)

    async def users_ctx(app: web.Application) -> AsyncIterator[None]:
        sessions = SessionStore(app[keys.REDIS], secret, settings.sessions, app[keys.CLOCK])
        app[keys.SESSIONS] = sessions
        app[keys.LOGIN_THROTTLE] = LoginThrottle(app[keys.REDIS], settings.sessions)
        app[keys.USERS] = UserService(app[keys.DB], password_hasher(settings.sessions), app[keys.CLOCK], sessions)
        yield

    app.cleanup_ctx.append(users_ctx)


def setup_console(app: web.Application) -> None:
    """The supervisor console's service (the QA form is read at start: a bad form stops it) and page filters."""
    import zoneinfo

    from gateway.console.qa import load_form
    from gateway.console.service import ConsoleService

    settings = app[keys.SETTINGS].console
    tz = zoneinfo.ZoneInfo(settings.timezone)

    async def console_ctx(app: web.Application) -> AsyncIterator[None]:
        form = load_form(settings.qa_form_path())
        app[keys.CONSOLE] = ConsoleService(app[keys.DB], app[keys.CLOCK], settings, form)
        yield

    app.cleanup_ctx.append(console_ctx)
    env = aiohttp_jinja2.get_env(app)
    env.filters["local"] = lambda at, fmt="%Y-%m-%d %H:%M:%S": at.astimezone(tz).strftime(fmt) if at else ""
    env.filters["pct"] = lambda r: "–" if r is None else f"{100 * r:.1f}%"
    env.filters["secs"] = lambda s: "–" if s is None else f"{int(s) // 60}:{int(s) % 60:02d}"


def setup_templates(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=jinja2.select_autoescape(["html", "xml"], default_for_string=True, default=True),
    )
    env.globals["app_name"] = "contact-gateway"


def setup_routes(app: web.Application) -> None:
    api = app[keys.API]
    ops.setup_routes(app, api)
    login_views.setup_routes(app, api)
    console_views.setup_routes(app, api)
    customer_views.setup_routes(app, api)
    events_views.setup_routes(app, api)
    screenpop_views.setup_routes(app, api)
    agent_views.setup_routes(app, api)
    digital.setup_routes(app, api)
    voice.setup_routes(app, api)
    email_views.setup_routes(app, api)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    extra_setup: list[Callable[[web.Application], Any]] | None = None,
) -> web.Application:
    """Build the gateway application. Nothing is opened until the app starts."""
    app = web.Application(
        middlewares=[http_middleware, policy_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[keys.SETTINGS] = settings
    app[keys.CLOCK] = clock or SystemClock()
    app[keys.METRICS] = create_metrics()
    app[keys.API] = ApiRegistry()
    setup_embedded_stores(app)
    setup_postgres(app)
    setup_redis(app)
    setup_customers(app)
    setup_demo(app)
    setup_ingest(app)
    setup_screenpop(app)
    setup_users(app)
    setup_templates(app)
    setup_console(app)
    setup_routes(app)
    setup_ami(app)
    setup_imap(app)
    for step in extra_setup or ():
        step(app)
    return app
