"""Who is calling: the principal of a request, and the checks every route makes (deny by default).

Channel systems and integrations are *sources* (API key or Standard Webhooks
signature, see :mod:`gateway.auth`). People are *users* with a role, logged in
through the browser; :func:`principal_hook` lets the session layer add them.
"""

from __future__ import annotations

import dataclasses

from aiohttp import web

from gateway import keys
from gateway.auth import authenticate
from gateway.settings import SourceSettings


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``actor`` is what the audit records: ``source:<name>`` or ``user:<name>``."""

    actor: str
    role: str                      # "source", or a user's role: agent / supervisor / admin
    source: SourceSettings | None = None
    scopes: frozenset[str] = frozenset()
    webhook_id: str | None = None

    @property
    def name(self) -> str:
        return self.actor.split(":", 1)[1]


PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


def source_principal(source: SourceSettings, webhook_id: str | None = None) -> Principal:
    return Principal(f"source:{source.name}", "source", source, frozenset(source.scopes), webhook_id)


async def require_source(request: web.Request, scope: str, body: bytes = b"",
                         only: list[str] | None = None) -> Principal:
    """Authenticate the request as a source holding ``scope``; raise 401/403 problems otherwise."""
    app = request.app
    source, webhook_id = authenticate(request.headers, body, app[keys.SETTINGS].sources, app[keys.CLOCK].now(),
                                      scope=scope, only=only)
    principal = source_principal(source, webhook_id)
    request[PRINCIPAL] = principal
    return principal
