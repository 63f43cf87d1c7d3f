"""Helpers for tests with people logged in: fast password hashing, adding users, logging in, CSRF tokens."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.settings import Settings
from tests.conftest import make_settings

PASSWORD = "correct horse battery staple"
FAST_HASHING = {"password_time_cost": 1, "password_memory_kib": 1024}
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def people_settings(database_url: str, redis_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    sessions = {**FAST_HASHING, **overrides.pop("sessions", {})}
    return make_settings(database_url, redis_url, tmp_path, sessions=sessions, **overrides)


async def add_user(app: web.Application, name: str, role: str, agent_id: str | None = None,
                   password: str = PASSWORD, display_name: str | None = None) -> Any:
    if role == "agent" and agent_id is None:
        agent_id = "8" + str(abs(hash(name)) % 1000).zfill(3)
    return await app[keys.USERS].add(name, display_name or name.title(), role, agent_id, password, actor="test")


async def login(client: Any, name: str, password: str = PASSWORD, *, next_path: str = "",
                headers: dict[str, str] | None = None) -> Any:
    """Post the login form as a browser does (fetching the form first for its CSRF cookie and token)."""
    form = await client.get("/login", headers={"Accept": "text/html"})
    token = _CSRF_RE.search(await form.text())
    assert token, "the login form carries a CSRF token"
    return await client.post("/login", data={"name": name, "password": password, "csrf_token": token.group(1),
                                              "next": next_path}, allow_redirects=False, headers=headers)


async def csrf_of(client: Any) -> str:
    """The CSRF token of the client's session, as a page's forms carry it."""
    resp = await client.get("/logout", headers={"Accept": "text/html"})
    assert resp.status == 200, await resp.text()
    token = _CSRF_RE.search(await resp.text())
    assert token
    return token.group(1)
