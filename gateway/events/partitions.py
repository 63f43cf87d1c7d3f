"""Monthly partitions of the events table: created ahead of time, and on demand.

``PartitionManager.ensure(months)`` is called by ingest before a batch is
committed, for the months its events fall in; a month already known costs a
set lookup. A maintenance loop creates the current month and the next
``AHEAD`` months at start and every few hours, so the common path never does
DDL. Creation is serialised in PostgreSQL (``ensure_events_partition`` takes
an advisory lock), so several gateways may race safely.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable

import asyncpg
import structlog

from gateway.clock import Clock
from gateway.db.pool import fetch, fetchval

log = structlog.get_logger("gateway.partitions")

AHEAD = 3
MAINTENANCE_INTERVAL = 6 * 3600


def month_of(at: dt.datetime) -> dt.date:
    """The first day of the month (UTC) that holds ``at``: its events partition."""
    if at.day not in (1, 28, 29, 30, 31):  # an offset of under a day cannot leave the month
        return dt.date(at.year, at.month, 1)
    utc = at.astimezone(dt.UTC)
    return dt.date(utc.year, utc.month, 1)


def add_months(month: dt.date, n: int) -> dt.date:
    y, m = divmod(month.month - 1 + n, 12)
    return dt.date(month.year + y, m + 1, 1)


_LIST = """
SELECT c.relname FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname = 'events'
"""


def _name(month: dt.date) -> str:
    return f"events_y{month.year:04d}m{month.month:02d}"


class PartitionManager:
    def __init__(self, pool: asyncpg.Pool, clock: Clock) -> None:
        self._pool = pool
        self._clock = clock
        self._known: set[str] = set()
        self._lock = asyncio.Lock()

    def covers(self, months: Iterable[dt.date]) -> bool:
        """Whether every month's partition is known to exist (no I/O: the ingest hot path asks this)."""
        return all(_name(m) in self._known for m in months)

    async def load(self) -> None:
        async with self._pool.acquire() as conn:
            self._known = {r["relname"] for r in await fetch(conn, "partitions.list", _LIST)}

    async def ensure(self, months: Iterable[dt.date]) -> None:
        missing = [m for m in set(months) if _name(m) not in self._known]
        if not missing:
            return
        async with self._lock:
            async with self._pool.acquire() as conn:
                for month in sorted(missing):
                    if _name(month) in self._known:
                        continue
                    async with conn.transaction():
                        name = await fetchval(conn, "partitions.ensure", "SELECT ensure_events_partition($1)", month)
                    self._known.add(name)
                    log.info("events.partition_ready", partition=name)

    async def ensure_ahead(self) -> None:
        current = month_of(self._clock.now())
        await self.ensure(add_months(current, n) for n in range(-1, AHEAD + 1))

    async def maintain(self) -> None:
        """Run forever: keep partitions created ahead of time."""
        while True:
            try:
                await self.ensure_ahead()
            except Exception:  # a failed round is retried at the next one; ingest creates on demand anyway
                log.warning("events.partition_maintenance_failed", exc_info=True)
            await asyncio.sleep(MAINTENANCE_INTERVAL)
