import asyncio

import asyncpg

from gateway.db.migrate import latest_version, load_migrations, migrate, migrate_dsn
from tests.conftest import create_test_database, drop_test_database



async def test_migrations_are_numbered_and_ordered():
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    assert migrations[0].version == 1


async def test_migrate_from_empty_then_rerun_is_noop(pg_server):
    name, url = await create_test_database(pg_server, "template0")
    try:
        applied = await migrate_dsn(url)
        assert applied == [m.version for m in load_migrations()]
        assert await migrate_dsn(url) == []
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT max(version) FROM schema_version") == latest_version()
        finally:
            await conn.close()
    finally:
        await drop_test_database(pg_server, name)


async def test_two_concurrent_migrators_do_not_race(pg_server):
    name, url = await create_test_database(pg_server, "template0")
    try:
        conns = [await asyncpg.connect(url) for _ in range(3)]
        try:
            results = await asyncio.gather(*(migrate(c) for c in conns))
        finally:
            for c in conns:
                await c.close()
        applied = sorted(v for r in results for v in r)
        assert applied == [m.version for m in load_migrations()], "each migration applied exactly once"
    finally:
        await drop_test_database(pg_server, name)


async def test_audit_log_is_append_only(db):
    await db.execute("INSERT INTO audit_log (actor, action) VALUES ('alice', 'login')")
    for sql in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        try:
            await db.execute(sql)
        except asyncpg.exceptions.InsufficientPrivilegeError:
            continue
        raise AssertionError(f"{sql} was allowed")
    assert await db.fetchval("SELECT actor FROM audit_log") == "alice"
