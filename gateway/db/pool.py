"""The asyncpg pool, with JSON codecs set on every connection, and named-query helpers.

Every query the stores run goes through :func:`fetch`, :func:`fetchrow`,
:func:`fetchval` or :func:`execute` with a *name*; a query slower than
``slow_query_ms`` is logged with that name and its duration (never its
values). asyncpg and OS errors that mean the store is unreachable become
:class:`gateway.errors.StoreUnavailable` here, at one boundary.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import structlog

from gateway.errors import StoreUnavailable

log = structlog.get_logger("gateway.db")

_json_encode = msgspec.json.Encoder()
_json_decode = msgspec.json.Decoder()

# Errors that mean "the database is not reachable" rather than "this query is wrong".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    TimeoutError,
)

SLOW_QUERY_MS = 200.0


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + _json_encode.encode(value)  # jsonb's binary format: a version byte, then the text


def _decode_jsonb(data: bytes) -> Any:
    return _json_decode.decode(data[1:])


async def init_connection(conn: asyncpg.Connection) -> None:
    """Codecs for every pooled connection: json/jsonb as Python objects, in binary format (COPY needs it)."""
    await conn.set_type_codec("jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog",
                              format="binary")
    await conn.set_type_codec("json", encoder=_json_encode.encode, decoder=_json_decode.decode,
                              schema="pg_catalog", format="binary")


async def _light_reset(conn: asyncpg.Connection) -> None:
    """Nothing beyond asyncpg's own rollback of an open transaction.

    The default reset (``CLOSE ALL; UNLISTEN *; RESET ALL; pg_advisory_unlock_all()``) costs a round trip on
    every release — about half of an in-process identity lookup under load. The gateway never leaves
    session state on a pooled connection: no SET, no LISTEN, cursors only inside transactions, and the one
    session advisory lock (the migrator's) is released in a ``finally``.
    """


async def create_pool(dsn: str, *, min_size: int, max_size: int, command_timeout: float) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            command_timeout=command_timeout,
            init=init_connection,
            reset=_light_reset,
            server_settings={"application_name": "contact-gateway", "timezone": "UTC"},
        )
    except UNAVAILABLE_ERRORS as exc:
        raise StoreUnavailable("PostgreSQL is unreachable", store="postgresql") from exc
    assert pool is not None
    return pool


@contextlib.contextmanager
def translate_errors() -> Any:
    """Turn connectivity failures into StoreUnavailable; let every other error through."""
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        raise StoreUnavailable("PostgreSQL is unreachable", store="postgresql") from exc


@contextlib.contextmanager
def _timed(name: str) -> Any:
    start = time.perf_counter()
    with translate_errors():
        yield
    ms = (time.perf_counter() - start) * 1000
    if ms >= SLOW_QUERY_MS:
        log.warning("db.slow_query", query=name, ms=round(ms, 1))


async def fetch(conn: Any, name: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    with _timed(name):
        return await conn.fetch(sql, *args)


async def fetchrow(conn: Any, name: str, sql: str, *args: Any) -> asyncpg.Record | None:
    with _timed(name):
        return await conn.fetchrow(sql, *args)


async def fetchval(conn: Any, name: str, sql: str, *args: Any) -> Any:
    with _timed(name):
        return await conn.fetchval(sql, *args)


async def execute(conn: Any, name: str, sql: str, *args: Any) -> str:
    with _timed(name):
        return await conn.execute(sql, *args)


async def executemany(conn: Any, name: str, sql: str, args: Any) -> None:
    with _timed(name):
        await conn.executemany(sql, args)


@contextlib.asynccontextmanager
async def transaction(pool: asyncpg.Pool, name: str) -> AsyncIterator[asyncpg.Connection]:
    """A named transaction on a pooled connection."""
    with _timed(name):
        async with pool.acquire() as conn, conn.transaction():
            yield conn
