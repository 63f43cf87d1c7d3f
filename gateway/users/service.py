"""Accounts: add, disable, enable, reset; password checks with argon2id.

Rules: a user name is lower-case letters, digits, ``.``, ``_`` or ``-`` (at most 64); the role is
``agent``, ``supervisor`` or ``admin``; an agent has an agent id (坐席号, unique); a password has 10 to
256 characters. Disabling a user or resetting the password ends every session of that user at once
(and the session check also refuses sessions of disabled users, or older than the last password
change, so this holds even when the CLI could not reach Redis). Every change is audited.

Raises :class:`~gateway.errors.ValidationFailed` naming the field, :class:`~gateway.errors.Conflict`
for a taken name or agent id, :class:`~gateway.errors.NotFound` for an unknown user.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

import argon2
import argon2.exceptions

from gateway import audit
from gateway.clock import Clock
from gateway.errors import Conflict, NotFound, ValidationFailed
from gateway.settings import SessionSettings
from gateway.users import store
from gateway.users.store import ROLES, User

if TYPE_CHECKING:
    from gateway.users.sessions import SessionStore

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
AGENT_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MIN_PASSWORD, MAX_PASSWORD = 10, 256


def password_hasher(settings: SessionSettings) -> argon2.PasswordHasher:
    return argon2.PasswordHasher(time_cost=settings.password_time_cost, memory_cost=settings.password_memory_kib,
                                 parallelism=1)


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValidationFailed.field("password", f"{MIN_PASSWORD} to {MAX_PASSWORD} characters")


class UserService:
    def __init__(self, pool: Any, hasher: argon2.PasswordHasher, clock: Clock,
                 sessions: SessionStore | None = None) -> None:
        self._pool = pool
        self._hasher = hasher
        self._clock = clock
        self._sessions = sessions
        # A hash of nothing in particular: unknown users cost as much to check as known ones.
        self._dummy = hasher.hash("contact-gateway: no such user")

    async def _hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self._hasher.hash, password)

    async def get(self, name: str) -> User | None:
        return await store.get_by_name(self._pool, name)

    async def list(self) -> list[User]:
        return await store.list_users(self._pool)

    async def add(self, name: str, display_name: str, role: str, agent_id: str | None, password: str, *,
                  actor: str) -> User:
        if not NAME_RE.match(name):
            raise ValidationFailed.field("name", "lower-case letters, digits, '.', '_' or '-' (at most 64)")
        display_name = display_name.strip()
        if not 1 <= len(display_name) <= 100:
            raise ValidationFailed.field("display_name", "1 to 100 characters")
        if role not in ROLES:
            raise ValidationFailed.field("role", f"one of {', '.join(ROLES)}")
        if agent_id is not None and not AGENT_ID_RE.match(agent_id):
            raise ValidationFailed.field("agent_id", "letters, digits, '.', '_' or '-' (at most 64)")
        if role == "agent" and not agent_id:
            raise ValidationFailed.field("agent_id", "an agent needs an agent id")
        check_password(password)
        digest = await self._hash(password)
        async with self._pool.acquire() as conn, conn.transaction():
            user = await store.insert(conn, name, display_name, role, agent_id, digest, self._clock.now())
            if user is None:
                raise Conflict(f"user name {name!r} or agent id is already taken")
            await audit.record(conn, actor=actor, action="user.add",
                               details={"user": name, "role": role, "agent_id": agent_id})
        return user

    async def set_disabled(self, name: str, disabled: bool, *, actor: str) -> User:
        async with self._pool.acquire() as conn, conn.transaction():
            user = await store.set_disabled(conn, name, disabled, self._clock.now())
            if user is None:
                raise NotFound(f"no user {name!r}")
            await audit.record(conn, actor=actor, action="user.disable" if disabled else "user.enable",
                               details={"user": name})
        if disabled and self._sessions is not None:
            await self._sessions.delete_user(name)
        return user

    async def reset_password(self, name: str, password: str, *, actor: str) -> User:
        check_password(password)
        digest = await self._hash(password)
        async with self._pool.acquire() as conn, conn.transaction():
            user = await store.set_password(conn, name, digest, self._clock.now())
            if user is None:
                raise NotFound(f"no user {name!r}")
            await audit.record(conn, actor=actor, action="user.reset", details={"user": name})
        if self._sessions is not None:
            await self._sessions.delete_user(name)
        return user

    async def authenticate(self, name: str, password: str) -> User | None:
        """The enabled user with this name and password, else None (same cost whether or not the name exists)."""
        user = await store.get_by_name(self._pool, name) if NAME_RE.match(name) else None
        digest = user.password_hash if user is not None else self._dummy
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._hasher.verify, digest, password[:MAX_PASSWORD])
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return None
        if user is None or user.disabled:
            return None
        if self._hasher.check_needs_rehash(digest):
            await store.rehash(self._pool, name, await self._hash(password), digest)
        return user
