"""Who is calling, and who may call what: deny by default.

Two kinds of callers:

- *sources* — channel systems and integrations, authenticated by API key or Standard Webhooks
  signature (:mod:`gateway.auth`), each holding scopes (``events``, ``customers``, ``read``, ``link``);
- *users* — people logged in through the browser (:mod:`gateway.views.login`), each with one role:
  ``agent``, ``supervisor`` or ``admin``. Their session is a cookie naming a Redis session.

Every route declares an :class:`Access` policy when it is registered (``add_route(..., access=...)``,
or :func:`declare` for routes added another way). :func:`policy_middleware` enforces it before the
handler runs:

- a route **without a policy is refused** (403) to everybody, and logged;
- ``PUBLIC`` routes run for anyone (a logged-in user is still recognised, for ``/`` and ``/login``);
- a logged-in user whose role the policy admits gets ``request[PRINCIPAL]``; on an unsafe method
  (POST, PUT, PATCH, DELETE) the request must carry the session's CSRF token, in the ``X-CSRF-Token``
  header or a ``csrf_token`` form field, else 403;
- a user whose role the policy does not admit gets 403;
- nobody logged in: a route open to sources runs, and its handler authenticates the source itself
  (``require_source`` / :func:`require_reader`; it needs the body for signatures) — if the handler
  returns without having authenticated anybody, the response is replaced by a 403 and logged;
  a route for users only answers 401, or, for a browser page (``GET`` outside ``/v1/``), redirects
  to ``/login?next=…``.

On every request with a session cookie the user row is read again: a disabled user, a changed role
or a session older than the last password change ends the session at once.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Iterable
from urllib.parse import quote

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import keys
from gateway.auth import authenticate
from gateway.errors import Forbidden, Unauthorized
from gateway.settings import SourceSettings
from gateway.users import store as user_store
from gateway.users.sessions import Session

log = structlog.get_logger("gateway.access")

ROLES = frozenset({"agent", "supervisor", "admin"})
SESSION_COOKIE = "cg_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclasses.dataclass(frozen=True, slots=True)
class Access:
    """Who may call a route: anyone (``public``), users of some ``roles``, sources with one of ``scopes``."""

    public: bool = False
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = self.roles - ROLES
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}")
        if self.public and (self.roles or self.scopes):
            raise ValueError("a public route names no roles or scopes")

    def describe(self) -> str:
        if self.public:
            return "public"
        parts = [f"roles {', '.join(sorted(self.roles))}"] if self.roles else []
        parts += [f"source scope {' or '.join(sorted(self.scopes))}"] if self.scopes else []
        return "; ".join(parts)


PUBLIC = Access(public=True)


def users(*roles: str) -> Access:
    """Logged-in users with one of ``roles``."""
    return Access(roles=frozenset(roles))


def sources(scope: str, *, roles: Iterable[str] = ()) -> Access:
    """Sources holding ``scope`` (checked by the handler), and optionally users with one of ``roles``."""
    return Access(roles=frozenset(roles), scopes=frozenset({scope}))


READERS = ("agent", "supervisor")          # people who read customers and their history
CONSOLE = ("supervisor", "admin")          # the supervisor console


def declare(app_or_api: object, method: str, path: str, access: Access) -> None:
    """Declare the policy of a route added without :func:`gateway.openapi.add_route` (static files)."""
    from gateway.openapi import ApiRegistry

    api = app_or_api[keys.API] if isinstance(app_or_api, web.Application) else app_or_api
    assert isinstance(api, ApiRegistry)
    api.access[(method.upper(), path)] = access


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``actor`` is what the audit records: ``source:<name>`` or ``user:<name>``."""

    actor: str
    role: str                      # "source", or a user's role: agent / supervisor / admin
    source: SourceSettings | None = None
    scopes: frozenset[str] = frozenset()
    webhook_id: str | None = None
    agent_id: str | None = None    # a user's agent id (坐席号), agents only
    display_name: str = ""

    @property
    def name(self) -> str:
        return self.actor.split(":", 1)[1]

    @property
    def is_user(self) -> bool:
        return self.role != "source"


PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
SESSION: web.RequestKey[Session] = web.RequestKey("session", Session)


def source_principal(source: SourceSettings, webhook_id: str | None = None) -> Principal:
    return Principal(f"source:{source.name}", "source", source, frozenset(source.scopes), webhook_id)


def user_principal(session: Session) -> Principal:
    return Principal(f"user:{session.name}", session.role, agent_id=session.agent_id,
                     display_name=session.display_name)


async def require_source(request: web.Request, scope: str, body: bytes = b"",
                         only: list[str] | None = None) -> Principal:
    """Authenticate the request as a source holding ``scope``; raise 401/403 problems otherwise."""
    app = request.app
    source, webhook_id = authenticate(request.headers, body, app[keys.SETTINGS].sources, app[keys.CLOCK].now(),
                                      scope=scope, only=only)
    principal = source_principal(source, webhook_id)
    request[PRINCIPAL] = principal
    return principal


async def require_reader(request: web.Request, scope: str, body: bytes = b"") -> Principal:
    """The logged-in user the policy admitted, or else a source holding ``scope``."""
    principal = request.get(PRINCIPAL)
    if principal is not None and principal.is_user:
        return principal
    return await require_source(request, scope, body)


async def require_user(request: web.Request, roles: Iterable[str] = ROLES) -> Principal:
    """The logged-in user of this request, with one of ``roles``; 401 when nobody is logged in, else 403."""
    principal = request.get(PRINCIPAL)
    if principal is None or not principal.is_user:
        raise Unauthorized("log in first")
    if principal.role not in set(roles):
        raise Forbidden(f"role {principal.role!r} may not do this")
    return principal


def current_user(request: web.Request) -> Principal | None:
    principal = request.get(PRINCIPAL)
    return principal if principal is not None and principal.is_user else None


def csrf_token(request: web.Request) -> str:
    """The CSRF token of the request's session ('' without one); templates put it in every form."""
    session = request.get(SESSION)
    return session.csrf if session is not None else ""


def policy_of(request: web.Request) -> Access | None:
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return None
    table = request.app[keys.API].access
    method = request.method.upper()
    policy = table.get((method, resource.canonical)) or table.get(("*", resource.canonical))
    if policy is None and method == "HEAD":
        policy = table.get(("GET", resource.canonical))
    return policy


async def load_session(request: web.Request) -> Session | None:
    """The live session of the request's cookie, checked against the user row; None without one.

    A session of a disabled user, of a user whose role changed, or older than the user's last password
    change is deleted here.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    sessions = request.app[keys.SESSIONS]
    session = await sessions.load(token)
    if session is None:
        return None
    user = await user_store.get_by_name(request.app[keys.DB], session.name)
    if (user is None or user.disabled or user.role != session.role or user.agent_id != session.agent_id
            or user.password_changed_at.timestamp() > session.created):
        await sessions.delete(session)
        log.info("session.revoked", user=session.name)
        return None
    return session


def wants_page(request: web.Request) -> bool:
    """A browser page request (redirect to /login) rather than an API call (401)."""
    return request.method in ("GET", "HEAD") and not request.path.startswith("/v1/") \
        and request.headers.get("Upgrade", "").lower() != "websocket"


async def _check_csrf(request: web.Request, session: Session) -> None:
    given = request.headers.get(CSRF_HEADER, "")
    if not given and request.content_type in FORM_TYPES:
        form = await request.post()     # aiohttp keeps the parsed form: the handler reads it again
        value = form.get(CSRF_FIELD, "")
        given = value if isinstance(value, str) else ""
    if not given or not hmac.compare_digest(given.encode(), session.csrf.encode()):
        log.warning("access.csrf_refused", route=request.match_info.route.resource.canonical
                    if request.match_info.route.resource else request.path)
        raise Forbidden("missing or wrong CSRF token", errors=[{"field": CSRF_FIELD, "message": "invalid"}])


def _has_source_credentials(request: web.Request) -> bool:
    h = request.headers
    return bool(h.get("X-API-Key") or h.get("Authorization") or h.get("webhook-signature"))


def login_redirect(request: web.Request) -> web.HTTPSeeOther:
    return web.HTTPSeeOther("/login?next=" + quote(request.path_qs, safe="/"))


@web.middleware
async def policy_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Enforce the route's :class:`Access` policy (see the module docstring)."""
    if request.match_info.http_exception is not None:      # no route: let it answer 404/405
        return await handler(request)
    policy = policy_of(request)
    if policy is None:
        resource = request.match_info.route.resource
        log.error("access.no_policy", method=request.method,
                  route=resource.canonical if resource is not None else request.path)
        raise Forbidden("this route declares no access policy")
    session = await load_session(request) if request.cookies.get(SESSION_COOKIE) else None
    if session is not None and (policy.public or session.role in policy.roles):
        request[SESSION] = session
        request[PRINCIPAL] = user_principal(session)
        structlog.contextvars.bind_contextvars(user=session.name)
        if request.method not in SAFE_METHODS and not policy.public:   # public forms check their own
            await _check_csrf(request, session)
        return await handler(request)
    if policy.public:
        return await handler(request)
    if session is not None and not (policy.scopes and _has_source_credentials(request)):
        raise Forbidden(f"role {session.role!r} may not use this")
    if policy.scopes:
        response = await handler(request)
        principal = request.get(PRINCIPAL)
        if principal is None or not principal.scopes & policy.scopes:
            log.error("access.handler_did_not_authenticate", route=request.match_info.route.resource.canonical
                      if request.match_info.route.resource else request.path)
            if not response.prepared:
                raise Forbidden("the caller was not authenticated")
        return response
    if wants_page(request):
        raise login_redirect(request)
    raise Unauthorized("log in first", www_authenticate='Cookie realm="contact-gateway"')
