"""The OpenAPI 3.1 document, built from the routes as they are registered.

Every JSON route is added with :func:`add_route`, which records its operation;
``GET /openapi.json`` serves the document, and ``tests/test_openapi.py`` fails
when a registered route is missing from it. HTML pages are registered with
``html=True`` and stay out of the document.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.errors import PROBLEM_TYPES

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

PROBLEM_RESPONSE = {
    "description": "An RFC 9457 problem",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def json_response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OpenAPI response object for a JSON body."""
    return {"description": description, "content": {"application/json": {"schema": schema or {"type": "object"}}}}


@dataclasses.dataclass
class ApiRegistry:
    """The operations registered on one app, and the components they share."""

    operations: dict[tuple[str, str], dict[str, Any]] = dataclasses.field(default_factory=dict)
    schemas: dict[str, Any] = dataclasses.field(default_factory=lambda: {"Problem": PROBLEM_SCHEMA})
    security_schemes: dict[str, Any] = dataclasses.field(default_factory=dict)
    # (METHOD, path) -> the route's access policy (gateway.views.access.Access); a route without one is refused
    access: dict[tuple[str, str], Any] = dataclasses.field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        for (method, path), op in sorted(self.operations.items()):
            operation = dict(op)
            responses = dict(operation.get("responses", {}))
            responses.setdefault("default", PROBLEM_RESPONSE)
            operation["responses"] = responses
            paths.setdefault(path, {})[method.lower()] = operation
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "contact-gateway",
                "version": __version__,
                "description": "Omnichannel contact-centre integration gateway. Errors are RFC 9457 problems; "
                + "problem types: " + ", ".join(sorted(PROBLEM_TYPES)) + ".",
            },
            "paths": paths,
            "components": {"schemas": self.schemas, "securitySchemes": self.security_schemes},
        }


def add_route(
    app: web.Application,
    registry: ApiRegistry,
    method: str,
    path: str,
    handler: Handler,
    operation: dict[str, Any] | None = None,
    *,
    html: bool = False,
    name: str | None = None,
    access: Any = None,
) -> None:
    """Register a route, its access policy and (unless it is an HTML page) its OpenAPI operation.

    ``access`` is a :class:`gateway.views.access.Access` saying who may call the route (``PUBLIC``,
    ``users(...)``, ``sources(...)``). A route registered without one is refused to everybody (deny by
    default; see :mod:`gateway.views.access`).
    """
    app.router.add_route(method, path, handler, name=name)
    if access is not None:
        registry.access[(method.upper(), path)] = access
    if html or method == "*":
        return
    if operation is None:
        raise ValueError(f"route {method} {path} needs an OpenAPI operation")
    registry.operations[(method.upper(), path)] = operation


async def openapi_view(request: web.Request) -> web.Response:
    from gateway import keys

    return web.json_response(request.app[keys.API].document())
