"""The audit writer's group commit on a real PostgreSQL: concurrent records share commits, each caller
returns only once its record is stored, and a failure reaches every caller of that group only."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gateway.audit import AuditWriter


async def test_concurrent_records_are_all_committed_before_their_callers_return(db):
    writer = AuditWriter(db)
    writer.start()
    try:
        iid = uuid.uuid4()

        async def one(n: int) -> int:
            await writer.record(actor=f"source:cti-{n}", action="screenpop", actor_role="source",
                                interaction_id=iid, details={"pop_id": str(n), "alerts": ["vip"]})
            # returned: the record is committed and visible to any other connection
            return await db.fetchval("SELECT count(*) FROM audit_log WHERE details->>'pop_id' = $1", str(n))

        seen = await asyncio.gather(*(one(n) for n in range(200)))
        assert seen == [1] * 200
        rows = await db.fetch("SELECT actor, actor_role, interaction_id, details FROM audit_log "
                              "WHERE action = 'screenpop' ORDER BY (details->>'pop_id')::int")
        assert [r["actor"] for r in rows] == [f"source:cti-{n}" for n in range(200)]
        assert {r["interaction_id"] for r in rows} == {iid} and rows[7]["details"]["alerts"] == ["vip"]
    finally:
        await writer.stop()


async def test_a_failed_group_fails_its_callers_and_the_writer_goes_on(db):
    writer = AuditWriter(db)
    writer.start()
    try:
        with pytest.raises(Exception, match="audit_log"):  # no actor: the NOT NULL constraint
            await writer.record(actor=None, action="customer.view")  # type: ignore[arg-type]
        await writer.record(actor="user:a", action="customer.view")
        assert await db.fetchval("SELECT count(*) FROM audit_log WHERE actor = 'user:a'") == 1
    finally:
        await writer.stop()
    # stopped, it writes directly
    await writer.record(actor="user:b", action="logout")
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE actor = 'user:b'") == 1
