"""Login sessions and login throttling, in Redis.

A session is a Redis hash under ``cg:session:<digest>`` where the digest is an HMAC of the cookie's
random token (keyed with ``session_secret``), so a copy of Redis holds no usable cookie. It records the
user, role, agent id, its CSRF token, when it was created and when it was last used, both read from the
injected clock: a session idle for longer than ``sessions.idle_timeout_seconds``, or older than
``sessions.absolute_timeout_seconds``, is deleted when next presented. The Redis TTL (the smaller of the
two remaining times) is only a backstop that keeps abandoned sessions from piling up.

Each user's session digests are kept in a set, so disabling a user or resetting a password deletes every
session of theirs at once. Login failures are counted per user name and per client address in
``cg:throttle:login:*`` counters that expire after ``sessions.login_throttle_seconds``.

Redis errors become :class:`~gateway.errors.StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import math
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

import redis.exceptions

from gateway import redis_keys
from gateway.clock import Clock
from gateway.errors import StoreUnavailable, TooManyRequests
from gateway.settings import SessionSettings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gateway.users.store import User


@contextlib.contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise StoreUnavailable("Redis is unavailable; sessions cannot be checked") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    """A live session. ``digest`` names it in Redis; ``csrf`` is the token every unsafe request must echo."""

    digest: str
    name: str
    role: str
    agent_id: str | None
    display_name: str
    csrf: str
    created: float
    seen: float


class SessionStore:
    def __init__(self, redis: Redis, secret: bytes, settings: SessionSettings, clock: Clock) -> None:
        self._redis = redis
        self._secret = secret
        self._settings = settings
        self._clock = clock

    def digest(self, token: str) -> str:
        return hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()

    def _ttl(self, created: float, now: float) -> int:
        left = min(self._settings.idle_timeout_seconds,
                   self._settings.absolute_timeout_seconds - (now - created))
        return max(1, math.ceil(left))

    async def create(self, user: User) -> tuple[str, Session]:
        """A new session for ``user``: returns the cookie token (shown once) and the session."""
        token = secrets.token_urlsafe(32)
        now = self._clock.now().timestamp()
        session = Session(self.digest(token), user.name, user.role, user.agent_id, user.display_name,
                          secrets.token_urlsafe(32), now, now)
        key = redis_keys.session(session.digest)
        with _redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={
                    "name": user.name, "role": user.role, "agent_id": user.agent_id or "",
                    "display_name": user.display_name, "csrf": session.csrf,
                    "created": repr(now), "seen": repr(now),
                })
                pipe.expire(key, self._ttl(now, now))
                pipe.sadd(redis_keys.user_sessions(user.name), session.digest)
                pipe.expire(redis_keys.user_sessions(user.name), self._settings.absolute_timeout_seconds)
                await pipe.execute()
        return token, session

    async def load(self, token: str) -> Session | None:
        """The live session of a cookie token, its last use moved to now; None when unknown or expired."""
        if not token or len(token) > 100:
            return None
        digest = self.digest(token)
        key = redis_keys.session(digest)
        with _redis_errors():
            raw = await self._redis.hgetall(key)
        if not raw:
            return None
        d = {_text(k): _text(v) for k, v in raw.items()}
        try:
            created, seen = float(d["created"]), float(d["seen"])
            session = Session(digest, d["name"], d["role"], d["agent_id"] or None, d["display_name"], d["csrf"],
                              created, seen)
        except (KeyError, ValueError):
            await self._delete(session_name=d.get("name"), digest=digest)
            return None
        now = self._clock.now().timestamp()
        if (now - seen > self._settings.idle_timeout_seconds
                or now - created > self._settings.absolute_timeout_seconds):
            await self._delete(session.name, digest)
            return None
        with _redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, "seen", repr(now))
                pipe.expire(key, self._ttl(created, now))
                await pipe.execute()
        return dataclasses.replace(session, seen=now)

    async def _delete(self, session_name: str | None, digest: str) -> None:
        with _redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(redis_keys.session(digest))
                if session_name:
                    pipe.srem(redis_keys.user_sessions(session_name), digest)
                await pipe.execute()

    async def delete(self, session: Session) -> None:
        await self._delete(session.name, session.digest)

    async def delete_user(self, name: str) -> int:
        """End every session of one user; returns how many there were."""
        members_key = redis_keys.user_sessions(name)
        with _redis_errors():
            digests = await self._redis.smembers(members_key)
            keys = [redis_keys.session(_text(d)) for d in digests]
            removed = int(await self._redis.delete(*keys)) if keys else 0
            await self._redis.delete(members_key)
        return removed


class LoginThrottle:
    """Counts failed logins per user name and per client address; refuses while either is over its limit."""

    def __init__(self, redis: Redis, settings: SessionSettings) -> None:
        self._redis = redis
        self._settings = settings

    def _keys(self, name: str, address: str) -> tuple[tuple[str, int], ...]:
        return ((redis_keys.login_throttle("user:" + name), self._settings.login_max_failures_per_user),
                (redis_keys.login_throttle("ip:" + address), self._settings.login_max_failures_per_ip))

    async def check(self, name: str, address: str) -> None:
        """Raise :class:`TooManyRequests` (with ``retry_after``) when the user or the address is throttled."""
        for key, limit in self._keys(name, address):
            with _redis_errors():
                count = await self._redis.get(key)
                if count is not None and int(count) >= limit:
                    ttl = await self._redis.ttl(key)
                    raise TooManyRequests("too many failed logins; try again later",
                                          retry_after=max(int(ttl), 1))

    async def failed(self, name: str, address: str) -> None:
        with _redis_errors():
            for key, _ in self._keys(name, address):
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.incr(key)
                    pipe.ttl(key)
                    _, ttl = await pipe.execute()
                if ttl < 0:   # a new counter (EXPIRE NX needs Redis 7; the embedded one is 6)
                    await self._redis.expire(key, self._settings.login_throttle_seconds)

    async def succeeded(self, name: str) -> None:
        with _redis_errors():
            await self._redis.delete(redis_keys.login_throttle("user:" + name))
