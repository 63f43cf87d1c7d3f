"""Logging in and out, the home redirect, the language switch, and the static files.

- ``GET /login`` shows the form; ``POST /login`` checks the password (argon2id), throttles failures
  per user name and per client address, starts a session (cookie ``cg_session``: ``HttpOnly``,
  ``SameSite``, ``Secure`` per ``sessions.cookie_secure``) and redirects to ``next`` or the role's home.
  The login form has its own CSRF token (a double-submit cookie, as there is no session yet).
- ``GET /logout`` asks; ``POST /logout`` (CSRF-checked like every form) ends the session.
- ``GET /`` sends agents to ``/agent``, supervisors and admins to ``/console``, anybody else to ``/login``.
- ``GET /lang/{lang}`` switches the pages between zh-CN and English.

Every login, failed login and logout is audited (``login``, ``login.failed``, ``logout``).
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from gateway import audit, keys
from gateway.errors import TooManyRequests
from gateway.i18n import LANG_COOKIE, LANGS
from gateway.middleware import request_id_of
from gateway.openapi import ApiRegistry, add_route
from gateway.settings import PROJECT_ROOT
from gateway.views.access import (
    CSRF_FIELD,
    PUBLIC,
    ROLES,
    SESSION,
    SESSION_COOKIE,
    current_user,
    declare,
    users,
)
from gateway.views.pages import page, render_page

log = structlog.get_logger("gateway.login")

STATIC_DIR = PROJECT_ROOT / "static"
LOGIN_CSRF_COOKIE = "cg_login_csrf"
HOME = {"agent": "/agent", "supervisor": "/console", "admin": "/console"}
MAX_FIELD = 256


def safe_next(value: str | None, default: str) -> str:
    """Only a local path: ``/x``, never ``//host`` or ``/\\host`` or a scheme (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or "\r" in value \
            or "\n" in value:
        return default
    return value


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, *,
                path: str = "/", max_age: int | None = None, samesite: str | None = None) -> None:
    settings = request.app[keys.SETTINGS]
    response.set_cookie(name, value, path=path, max_age=max_age, httponly=True,
                        secure=settings.session_cookie_secure(),
                        samesite=samesite or settings.sessions.cookie_samesite)


def _login_page(request: web.Request, *, error: str | None = None, status: int = 200,
                name: str = "") -> web.Response:
    token = secrets.token_urlsafe(24)
    nxt = safe_next(request.query.get("next") or None, "")
    response = render_page("login.html", request, {
        "login_csrf": token, "next": nxt, "error": error, "name": name,
        "expired": request.query.get("expired") == "1",
    }, status=status)
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, path="/login", samesite="Strict")
    response.headers["Cache-Control"] = "no-store"
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    if user is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next"), HOME[user.role]))
    return _login_page(request)


def _field(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value[:MAX_FIELD] if isinstance(value, str) else ""


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    given = _field(form, CSRF_FIELD)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not given or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return _login_page(request, error="login.bad_form", status=403)
    name = _field(form, "name").strip().lower()
    password = _field(form, "password")
    address = request.remote or "unknown"
    app = request.app
    pool, throttle = app[keys.DB], app[keys.LOGIN_THROTTLE]
    try:
        await throttle.check(name, address)
    except TooManyRequests as exc:
        await audit.record(pool, actor=f"user:{name}" if name else "anonymous", action="login.failed",
                           reason="throttled", request_id=request_id_of(request), details={"address": address})
        response = _login_page(request, error="login.throttled", status=429, name=name)
        response.headers["Retry-After"] = str(exc.extensions.get("retry_after", 60))
        return response
    user = await app[keys.USERS].authenticate(name, password)
    if user is None:
        await throttle.failed(name, address)
        await audit.record(pool, actor=f"user:{name}" if name else "anonymous", action="login.failed",
                           reason="bad credentials", request_id=request_id_of(request),
                           details={"address": address})
        log.info("login.failed")
        return _login_page(request, error="login.failed", status=401, name=name)
    await throttle.succeeded(name)
    token, _session = await app[keys.SESSIONS].create(user)
    await audit.record(pool, actor=f"user:{user.name}", actor_role=user.role, action="login",
                       request_id=request_id_of(request), details={"address": address})
    log.info("login.ok", user=user.name)
    response = web.HTTPSeeOther(safe_next(_field(form, "next") or None, HOME[user.role]))
    _set_cookie(request, response, SESSION_COOKIE, token)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    raise response


@page("logout.html")
async def logout_form(request: web.Request) -> dict[str, Any]:
    return {}


async def logout_submit(request: web.Request) -> web.StreamResponse:
    session = request[SESSION]
    await request.app[keys.SESSIONS].delete(session)
    await audit.record(request.app[keys.DB], actor=f"user:{session.name}", actor_role=session.role,
                       action="logout", request_id=request_id_of(request))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def home(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    raise web.HTTPSeeOther(HOME[user.role] if user is not None else "/login")


async def switch_lang(request: web.Request) -> web.StreamResponse:
    lang = request.match_info["lang"]
    if lang not in LANGS:
        raise web.HTTPNotFound()
    target = safe_next(request.query.get("next"), "/")
    response = web.HTTPSeeOther(target)
    response.set_cookie(LANG_COOKIE, lang, path="/", max_age=365 * 86400, samesite="Lax",
                        secure=request.app[keys.SETTINGS].session_cookie_secure())
    raise response


def setup_routes(app: web.Application, api: ApiRegistry) -> None:
    add_route(app, api, "GET", "/", home, html=True, access=PUBLIC)
    add_route(app, api, "GET", "/login", login_form, html=True, access=PUBLIC)
    add_route(app, api, "POST", "/login", login_submit, html=True, access=PUBLIC)
    add_route(app, api, "GET", "/logout", logout_form, html=True, access=users(*ROLES))
    add_route(app, api, "POST", "/logout", logout_submit, html=True, access=users(*ROLES))
    add_route(app, api, "GET", "/lang/{lang}", switch_lang, html=True, access=PUBLIC)
    static = app.router.add_static("/static", Path(STATIC_DIR), name="static", append_version=True)
    declare(api, "GET", static.canonical, PUBLIC)
    declare(api, "HEAD", static.canonical, PUBLIC)
