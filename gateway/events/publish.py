"""After-commit publication of events on Redis, never blocking ingest.

Ingest hands each committed batch to :meth:`Publisher.offer`, which only puts
it on a bounded in-memory queue. One task drains the queue and, per batch, in
one server-side script (one command, one round trip): deletes the cached
screen-pop summaries of the customers concerned, then publishes every event
on the all-events channel, its customer's channel and its agent's channel.

While Redis is down the task counts what it could not publish
(``cg_events_publish_failed_total``) and backs off; it recovers by itself when
Redis answers again. Pub/sub is fire-and-forget (subscribers reconcile from
PostgreSQL, the source of truth), but cache invalidations are not: the ones
that failed are kept and replayed on recovery, so no stale summary survives an
outage.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import redis_keys
from gateway.events.model import PublishedEvent, encode
from gateway.metrics import Metrics
from gateway.tasks import cancel_and_wait, raise_if_cancelling

log = structlog.get_logger("gateway.publish")

QUEUE_BATCHES = 10_000
MAX_PENDING_INVALIDATIONS = 100_000
BACKOFF_START = 0.2
BACKOFF_MAX = 5.0

# One round trip and one command of four arguments per committed group, however many events and channels:
# a PUBLISH per event and channel in a client pipeline, and later one argument per payload and channel,
# cost more client CPU (redis-py checks and encodes every argument) than the rest of the publication.
# ARGV: the all-events channel; the customer and agent channel prefixes; the payloads, concatenated; and
# per event, as JSON, [payload length in bytes, customer id or null, agent id or null].
PUBLISH_GROUP = """
for i = 1, #KEYS do redis.call('DEL', KEYS[i]) end
local all, customers, agents, blob = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local pos, n = 1, 0
for _, r in ipairs(cjson.decode(ARGV[5])) do
  local payload = string.sub(blob, pos, pos + r[1] - 1)
  pos = pos + r[1]
  redis.call('PUBLISH', all, payload)
  n = n + 1
  if r[2] ~= cjson.null then redis.call('PUBLISH', customers .. string.format('%d', r[2]), payload); n = n + 1 end
  if r[3] ~= cjson.null then redis.call('PUBLISH', agents .. r[3], payload); n = n + 1 end
end
return n
"""
_CHANNELS = (redis_keys.ALL_EVENTS_CHANNEL, redis_keys.customer_channel(""), redis_keys.agent_channel(""))
_routes_encoder = msgspec.json.Encoder()


class Publisher:
    def __init__(self, redis: Redis, metrics: Metrics) -> None:
        self._redis = redis
        self._script = redis.register_script(PUBLISH_GROUP)
        self._metrics = metrics
        self._queue: asyncio.Queue[Sequence[PublishedEvent]] = asyncio.Queue(QUEUE_BATCHES)
        self._pending_invalidations: set[int] = set()
        self._invalidate_all = False
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        # called with each batch after it was published (and its cache entries dropped): the screen-pop
        # hub warms summaries there, after the invalidation, so a warm entry is not dropped behind it
        self.on_published: Callable[[Sequence[PublishedEvent]], None] | None = None

    def offer(self, messages: Sequence[PublishedEvent]) -> None:
        """Queue a committed batch for publication; never waits. A full queue counts as unpublished."""
        if not messages:
            return
        try:
            self._queue.put_nowait(messages)
        except asyncio.QueueFull:
            self._metrics.events_publish_failed.inc(len(messages))
            for m in messages:
                if m.customer_id is not None:
                    self._remember(m.customer_id)

    def _remember(self, customer_id: int) -> None:
        if len(self._pending_invalidations) >= MAX_PENDING_INVALIDATIONS:
            self._invalidate_all = True
            self._pending_invalidations.clear()
        else:
            self._pending_invalidations.add(customer_id)

    async def _replay_invalidations(self) -> None:
        if self._invalidate_all:
            async for key in self._redis.scan_iter(match=redis_keys.summary_cache("*"), count=1000):
                await self._redis.delete(key)
            self._invalidate_all = False
        if self._pending_invalidations:
            ids = list(self._pending_invalidations)
            await self._redis.delete(*(redis_keys.summary_cache(str(c)) for c in ids))
            self._pending_invalidations.difference_update(ids)

    async def _publish(self, messages: Sequence[PublishedEvent]) -> None:
        payloads = [encode(m) for m in messages]
        routes = [(len(p), m.customer_id, m.agent_id or None) for p, m in zip(payloads, messages, strict=True)]
        customers = {m.customer_id for m in messages if m.customer_id is not None}
        keys = [redis_keys.summary_cache(str(c)) for c in customers]
        await self._script(keys=keys, args=[*_CHANNELS, b"".join(payloads), _routes_encoder.encode(routes)])

    async def run(self) -> None:
        backoff = BACKOFF_START
        while True:
            batch = await self._queue.get()
            try:
                if self._pending_invalidations or self._invalidate_all:
                    await self._replay_invalidations()
                await self._publish(batch)
                self.published += len(batch)
                backoff = BACKOFF_START
                if self.on_published is not None:
                    self.on_published(batch)
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                self._metrics.events_publish_failed.inc(len(batch))
                for m in batch:
                    if m.customer_id is not None:
                        self._remember(m.customer_id)
                log.warning("events.publish_failed", events=len(batch), error=type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="event-publisher")

    async def drain(self, timeout: float = 2.0) -> None:
        """Wait (bounded) until the queue is empty; used at shutdown and by tests."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self._queue.empty():
                    await asyncio.sleep(0.005)

    async def stop(self) -> None:
        await self.drain()
        await cancel_and_wait(self._task)
