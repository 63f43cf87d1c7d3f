"""The audit trail: who saw or did what to which customer, and why. Append-only in PostgreSQL.

Actions in use: ``customer.view``, ``screenpop``, ``link``, ``unlink``, ``export``, ``login``,
``login.failed``, ``logout``, ``user.*``. Every call names its actor (``user:<name>`` or
``source:<name>``) and, where there is one, the customer, the interaction and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import asyncpg
import structlog

from gateway.db.pool import execute
from gateway.tasks import cancel_and_wait

log = structlog.get_logger("gateway.audit")

_INSERT = """
INSERT INTO audit_log (actor, actor_role, action, customer_id, interaction_id, reason, request_id, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""

_INSERT_MANY = """
INSERT INTO audit_log (actor, actor_role, action, customer_id, interaction_id, reason, request_id, details)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::uuid[], $6::text[], $7::text[],
                     $8::jsonb[])
"""


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    actor: str,
    action: str,
    actor_role: str | None = None,
    customer_id: int | None = None,
    interaction_id: uuid.UUID | None = None,
    reason: str | None = None,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await execute(conn, "audit.record", _INSERT, actor, actor_role, action, customer_id, interaction_id, reason,
                  request_id, details or {})


class AuditWriter:
    """Group commit for audit records: concurrent :meth:`record` calls share one INSERT and one commit.

    Each call returns only after its record is committed, as :func:`record` does; under a burst (a pop
    for every ringing call of a busy queue) the records of the burst cost one durable commit instead of
    one each. Not started (or stopped), it writes each record directly.
    """

    def __init__(self, pool: asyncpg.Pool, max_batch: int = 1000) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[tuple[Any, ...], asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while not self._queue.empty():
                    await asyncio.sleep(0.01)
        await cancel_and_wait(self._task)
        self._task = None

    async def record(self, *, actor: str, action: str, actor_role: str | None = None,
                     customer_id: int | None = None, interaction_id: uuid.UUID | None = None,
                     reason: str | None = None, request_id: str | None = None,
                     details: dict[str, Any] | None = None) -> None:
        if self._task is None or self._task.done():
            await record(self._pool, actor=actor, action=action, actor_role=actor_role, customer_id=customer_id,
                         interaction_id=interaction_id, reason=reason, request_id=request_id, details=details)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(((actor, actor_role, action, customer_id, interaction_id, reason, request_id,
                                 details or {}), fut))
        await fut

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            columns = [list(c) for c in zip(*(row for row, _ in batch), strict=True)]
            try:
                await execute(self._pool, "audit.record_many", _INSERT_MANY, *columns)
            except Exception as exc:  # each caller gets the error; the writer goes on
                log.warning("audit.write_failed", records=len(batch), error=type(exc).__name__)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
