"""The summary cache in Redis: a customer's facts, tagged with the version they were read at.

An entry is used only when its version equals the customer's current version (read from
PostgreSQL on every use, see :mod:`gateway.screenpop.store`), so a stale entry is never served,
whatever the order of the publisher's invalidation (``DEL`` after every committed event of the
customer) and a concurrent fill. Invalidation only frees memory early; the TTL bounds the rest.

Redis is optional here: on a Redis error the cache reports a miss, does not write, and stays
quiet for :data:`BACKOFF_SECONDS` so a Redis outage costs no time per pop (the summary is built
from PostgreSQL).
"""

from __future__ import annotations

import time

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import redis_keys
from gateway.screenpop.model import SummaryFacts

log = structlog.get_logger("gateway.screenpop.cache")

BACKOFF_SECONDS = 5.0
_encoder = msgspec.msgpack.Encoder(decimal_format="string")
_decoder = msgspec.msgpack.Decoder(SummaryFacts)


class RedisBreaker:
    """Skips Redis for a while after it failed, so an outage does not cost a timeout per request."""

    def __init__(self, backoff: float = BACKOFF_SECONDS) -> None:
        self._backoff = backoff
        self._until = 0.0

    @property
    def open(self) -> bool:
        return time.monotonic() < self._until

    def failed(self, exc: BaseException, event: str) -> None:
        if not self.open:
            log.warning(event, error=type(exc).__name__)
        self._until = time.monotonic() + self._backoff

    def reset(self) -> None:
        self._until = 0.0


class SummaryCache:
    def __init__(self, redis: Redis, ttl_seconds: int, breaker: RedisBreaker) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._breaker = breaker
        self.hits = 0
        self.misses = 0

    async def get(self, customer_id: int) -> SummaryFacts | None:
        if self._breaker.open:
            return None
        try:
            raw = await self._redis.get(redis_keys.summary_cache(str(customer_id)))
        except (RedisError, OSError) as exc:
            self._breaker.failed(exc, "screenpop.cache_unavailable")
            return None
        if not isinstance(raw, bytes):
            return None
        try:
            return _decoder.decode(raw)
        except msgspec.DecodeError:
            return None  # written by an older release: rebuilt and overwritten

    async def put(self, facts: SummaryFacts) -> None:
        if self._breaker.open:
            return
        try:
            await self._redis.set(redis_keys.summary_cache(str(facts.customer.profile.id)), _encoder.encode(facts),
                                  ex=self._ttl)
        except (RedisError, OSError) as exc:
            self._breaker.failed(exc, "screenpop.cache_unavailable")

    def count(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1
