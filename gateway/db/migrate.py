"""Forward-only SQL migrations.

Files ``gateway/db/migrations/NNNN_name.sql`` are applied in order, each in its
own transaction, under a PostgreSQL advisory lock so that two gateways
starting at once cannot race; each applied version is recorded in
``schema_version``. Re-running is a no-op.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import asyncpg
import structlog

log = structlog.get_logger("gateway.migrate")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# An arbitrary 64-bit constant: the advisory lock key of the migrator.
ADVISORY_LOCK_KEY = 0x43475F4D49475241  # "CG_MIGRA"
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    out = []
    for path in sorted(directory.iterdir()):
        m = _NAME_RE.match(path.name)
        if not m:
            if path.suffix == ".sql":
                raise ValueError(f"migration file {path.name!r} must be named NNNN_name.sql")
            continue
        out.append(Migration(int(m.group(1)), m.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise ValueError("two migration files share a version number")
    return out


def latest_version() -> int:
    migrations = load_migrations()
    return migrations[-1].version if migrations else 0


_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply every pending migration; return the versions applied (empty when current)."""
    applied: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        await conn.execute(_CREATE_VERSION_TABLE)
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_version")}
        for mig in load_migrations():
            if mig.version in done:
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_version (version, name) VALUES ($1, $2)", mig.version, mig.name
                )
            log.info("db.migration_applied", version=mig.version, name=mig.name)
            applied.append(mig.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
    return applied


async def migrate_dsn(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
