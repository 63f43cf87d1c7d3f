"""The ``users`` table: one row per person who logs in. Named queries; rows become :class:`User`."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import asyncpg

from gateway.db.pool import fetch, fetchrow

ROLES = ("agent", "supervisor", "admin")

_COLUMNS = "id, name, display_name, role, agent_id, password_hash, disabled, created_at, updated_at, " \
           "password_changed_at"

_BY_NAME = f"SELECT {_COLUMNS} FROM users WHERE name = $1"
_BY_AGENT = f"SELECT {_COLUMNS} FROM users WHERE agent_id = $1"
_LIST = f"SELECT {_COLUMNS} FROM users ORDER BY name"
_INSERT = f"""
INSERT INTO users (name, display_name, role, agent_id, password_hash, created_at, updated_at, password_changed_at)
VALUES ($1, $2, $3, $4, $5, $6, $6, $6)
ON CONFLICT DO NOTHING
RETURNING {_COLUMNS}
"""
_SET_DISABLED = f"""
UPDATE users SET disabled = $2, updated_at = $3 WHERE name = $1 RETURNING {_COLUMNS}
"""
_SET_PASSWORD = f"""
UPDATE users SET password_hash = $2, updated_at = $3, password_changed_at = $3 WHERE name = $1
RETURNING {_COLUMNS}
"""
_REHASH = "UPDATE users SET password_hash = $2 WHERE name = $1 AND password_hash = $3"


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    display_name: str
    role: str
    agent_id: str | None
    password_hash: str = dataclasses.field(repr=False)
    disabled: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    password_changed_at: dt.datetime

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> User:
        return cls(**dict(r))


def _user(r: Any) -> User | None:
    return User.from_record(r) if r is not None else None


async def get_by_name(conn: Any, name: str) -> User | None:
    return _user(await fetchrow(conn, "users.by_name", _BY_NAME, name))


async def get_by_agent_id(conn: Any, agent_id: str) -> User | None:
    return _user(await fetchrow(conn, "users.by_agent_id", _BY_AGENT, agent_id))


async def list_users(conn: Any) -> list[User]:
    return [User.from_record(r) for r in await fetch(conn, "users.list", _LIST)]


async def insert(conn: Any, name: str, display_name: str, role: str, agent_id: str | None, password_hash: str,
                 now: dt.datetime) -> User | None:
    """Insert a user; None when the name or agent id is taken."""
    return _user(await fetchrow(conn, "users.insert", _INSERT, name, display_name, role, agent_id, password_hash,
                                now))


async def set_disabled(conn: Any, name: str, disabled: bool, now: dt.datetime) -> User | None:
    return _user(await fetchrow(conn, "users.set_disabled", _SET_DISABLED, name, disabled, now))


async def set_password(conn: Any, name: str, password_hash: str, now: dt.datetime) -> User | None:
    return _user(await fetchrow(conn, "users.set_password", _SET_PASSWORD, name, password_hash, now))


async def rehash(conn: Any, name: str, new_hash: str, old_hash: str) -> None:
    await fetchrow(conn, "users.rehash", _REHASH, name, new_hash, old_hash)
