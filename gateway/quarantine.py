"""The quarantine: pulled messages that could not be parsed, kept with their raw bytes and the error."""

from __future__ import annotations

import asyncpg

from gateway.db.pool import fetchval

_INSERT = """
INSERT INTO quarantine (adapter, source, source_ref, error, raw)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (adapter, source, source_ref) WHERE source_ref IS NOT NULL DO NOTHING
RETURNING id
"""


async def quarantine(
    pool: asyncpg.Pool, *, adapter: str, source: str, source_ref: str | None, error: str, raw: bytes
) -> int | None:
    """Store one unparseable message; idempotent per (adapter, source, source_ref). Returns the new id."""
    async with pool.acquire() as conn:
        return await fetchval(conn, "quarantine.insert", _INSERT, adapter, source, source_ref, error[:2000], raw)
