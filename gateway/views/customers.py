"""Customer endpoints: upsert, read, bulk NDJSON import, resolve by identifier.

Every route needs an API key of a source with the ``customers`` scope (401 without one, 403 for a
source without the scope). Responses carry masked identifiers and a masked name only.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import structlog
from aiohttp import web

from gateway import audit, keys
from gateway.auth import authenticate
from gateway.customers.model import (
    CUSTOMER_NO_PATTERN,
    Appointment,
    Candidate,
    Case,
    CreditApplication,
    CustomerDocument,
    CustomerView,
    Entitlement,
    Holding,
    MaskedIdentifier,
    Resolution,
)
from gateway.errors import UnsupportedMediaType, ValidationFailed
from gateway.identity import KINDS
from gateway.middleware import request_id_of
from gateway.openapi import ApiRegistry, add_route, json_response
from gateway.views.access import PRINCIPAL, READERS, current_user, source_principal, sources

NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/jsonlines")
_encoder = msgspec.json.Encoder(decimal_format="string")


def _authenticate(request: web.Request) -> str:
    """The logged-in user the route's policy admitted, or else a source with the ``customers`` scope."""
    user = current_user(request)
    if user is not None:
        return user.actor
    app = request.app
    source, _ = authenticate(request.headers, b"", app[keys.SETTINGS].sources, app[keys.CLOCK].now(),
                             scope="customers")
    request[PRINCIPAL] = source_principal(source)
    structlog.contextvars.bind_contextvars(source=source.name)
    return source.name


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


def document_json(view: CustomerView) -> dict[str, Any]:
    """A stored document as the API shows it: masked name and identifiers, nothing raw."""
    p = view.profile
    profile = msgspec.to_builtins(p)
    del profile["id"], profile["name"]
    return {
        "customer_id": p.id,
        **profile,
        "name_masked": p.name_masked,
        "identifiers": msgspec.to_builtins(view.identifiers),
        "holdings": msgspec.to_builtins(view.holdings),
        "entitlements": msgspec.to_builtins(view.entitlements),
        "cases": msgspec.to_builtins(view.cases),
        "credit_applications": msgspec.to_builtins(view.credit_applications),
        "appointments": msgspec.to_builtins(view.appointments),
    }


def resolution_json(res: Resolution) -> dict[str, Any]:
    return {
        "outcome": res.outcome,
        "identifier": {"kind": res.kind, "masked": res.masked},
        "customer_id": res.customer_id,
        "candidates": msgspec.to_builtins(res.candidates),
    }


_CUSTOMER_NO_RE = re.compile(CUSTOMER_NO_PATTERN)
# Literal path segments of other customer routes: never a customer number (GET could not reach it).
RESERVED_CUSTOMER_NOS = frozenset({"resolve", "import"})


def _customer_no(request: web.Request) -> str:
    value = request.match_info["customer_no"]
    if not _CUSTOMER_NO_RE.match(value):
        raise ValidationFailed.field("customer_no", "1-64 letters, digits, '.', '_' or '-'")
    if value in RESERVED_CUSTOMER_NOS:
        raise ValidationFailed.field("customer_no", "reserved word, not a customer number")
    return value


async def put_customer(request: web.Request) -> web.Response:
    """Upsert one complete customer document (lists replaced) in one transaction."""
    _authenticate(request)
    customer_no = _customer_no(request)
    body = await request.read()
    view, created = await request.app[keys.CUSTOMERS].upsert(customer_no, body)
    return _json(document_json(view), status=201 if created else 200)


async def get_customer(request: web.Request) -> web.Response:
    _authenticate(request)
    view = await request.app[keys.CUSTOMERS].get(_customer_no(request))
    user = current_user(request)
    if user is not None:  # people's views of a customer are audited, with the reason they give
        reason = request.query.get("reason", "")[:200] or None
        await audit.record(request.app[keys.DB], actor=user.actor, actor_role=user.role, action="customer.view",
                           customer_id=view.profile.id, reason=reason, request_id=request_id_of(request))
    return _json(document_json(view))


async def resolve_customer(request: web.Request) -> web.Response:
    """Resolve exactly one identifier given as a query parameter named by its kind."""
    _authenticate(request)
    given = [(k, v) for k, v in request.query.items()]
    for k, _ in given:
        if k not in KINDS:
            raise ValidationFailed.field(k, f"unknown identifier kind (one of {', '.join(KINDS)})")
    if len(given) != 1:
        raise ValidationFailed.field("query", "give exactly one identifier, e.g. ?phone=13912345678")
    kind, value = given[0]
    res = await request.app[keys.CUSTOMERS].resolve(kind, value)
    return _json(resolution_json(res))


async def import_customers(request: web.Request) -> web.Response:
    """Stream an NDJSON body of documents into the read model; report bad lines by number and field."""
    _authenticate(request)
    if request.content_type not in NDJSON_TYPES:
        raise UnsupportedMediaType(f"send NDJSON ({NDJSON_TYPES[0]}), one customer document per line")
    report = await request.app[keys.CUSTOMERS].import_ndjson(request.content.iter_chunked(64 * 1024))
    return _json(report.as_dict())


def _register_schemas(api: ApiRegistry) -> None:
    _, components = msgspec.json.schema_components(
        [CustomerDocument, MaskedIdentifier, Holding, Entitlement, Case, CreditApplication, Appointment, Candidate],
        ref_template="#/components/schemas/{name}",
    )
    api.schemas.update(components)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


STORED_CUSTOMER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A stored customer document; identifiers and name masked.",
    "required": ["customer_id", "customer_no", "name_masked", "customer_type", "segment", "tier", "identifiers"],
    "properties": {
        "customer_id": {"type": "integer"},
        "customer_no": {"type": "string"},
        "name_masked": {"type": "string"},
        "customer_type": {"type": "string"},
        "segment": {"type": "string"},
        "tier": {"type": "string"},
        "vip": {"type": "boolean"},
        "home_branch": {"type": ["string", "null"]},
        "relationship_manager": {"type": ["string", "null"]},
        "service_group": {"type": ["string", "null"]},
        "preferred_language": {"type": "string"},
        "preferred_channel": {"type": ["string", "null"]},
        "do_not_call": {"type": "boolean"},
        "marketing_opt_out": {"type": "boolean"},
        "risk_rating": {"type": ["string", "null"]},
        "aum_band": {"type": ["string", "null"]},
        "updated_at": {"type": "string", "format": "date-time"},
        "identifiers": _list_of("MaskedIdentifier"),
        "holdings": _list_of("Holding"),
        "entitlements": _list_of("Entitlement"),
        "cases": _list_of("Case"),
        "credit_applications": _list_of("CreditApplication"),
        "appointments": _list_of("Appointment"),
    },
}
RESOLUTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["outcome", "identifier", "customer_id", "candidates"],
    "properties": {
        "outcome": {"enum": ["resolved", "ambiguous", "unidentified"]},
        "identifier": {"type": "object", "properties": {"kind": {"type": "string"}, "masked": {"type": "string"}}},
        "customer_id": {"type": ["integer", "null"], "description": "set only when resolved"},
        "candidates": _list_of("Candidate"),
    },
}
IMPORT_REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["lines", "loaded", "rejected", "errors"],
    "properties": {
        "lines": {"type": "integer"},
        "loaded": {"type": "integer"},
        "rejected": {"type": "integer"},
        "errors_truncated": {"type": "boolean"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["line", "field", "message"],
            "properties": {"line": {"type": "integer"}, "field": {"type": "string"}, "message": {"type": "string"}},
        }},
    },
}
_SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]
_PATH_PARAM = {"name": "customer_no", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}}


def setup_routes(app: web.Application, api: ApiRegistry) -> None:
    _register_schemas(api)
    api.security_schemes.setdefault("apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"})
    api.security_schemes.setdefault("bearer", {"type": "http", "scheme": "bearer"})
    # Literal paths first: /v1/customers/resolve must not be taken for a customer number.
    add_route(app, api, "GET", "/v1/customers/resolve", resolve_customer, {
        "operationId": "resolveCustomer", "summary": "Resolve an identifier to customers", "tags": ["customers"],
        "security": _SECURITY,
        "parameters": [{"name": k, "in": "query", "required": False, "schema": {"type": "string"},
                        "description": f"a {k} (give exactly one identifier)"} for k in KINDS],
        "responses": {"200": json_response("resolved, ambiguous (all candidates) or unidentified",
                                           RESOLUTION_SCHEMA)},
    }, access=sources("customers", roles=READERS))
    add_route(app, api, "POST", "/v1/customers/import", import_customers, {
        "operationId": "importCustomers", "summary": "Bulk-load customer documents (NDJSON)", "tags": ["customers"],
        "security": _SECURITY,
        "requestBody": {"required": True, "content": {t: {"schema": _ref("CustomerDocument")}
                                                      for t in NDJSON_TYPES[:2]}},
        "responses": {"200": json_response("What was loaded and which lines were rejected", IMPORT_REPORT_SCHEMA)},
    }, access=sources("customers"))
    add_route(app, api, "PUT", "/v1/customers/{customer_no}", put_customer, {
        "operationId": "putCustomer", "summary": "Upsert one complete customer document", "tags": ["customers"],
        "security": _SECURITY, "parameters": [_PATH_PARAM],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("CustomerDocument")}}},
        "responses": {"200": json_response("Updated", STORED_CUSTOMER_SCHEMA),
                      "201": json_response("Created", STORED_CUSTOMER_SCHEMA)},
    }, access=sources("customers"))
    add_route(app, api, "GET", "/v1/customers/{customer_no}", get_customer, {
        "operationId": "getCustomer", "summary": "One customer's document", "tags": ["customers"],
        "security": _SECURITY, "parameters": [_PATH_PARAM],
        "responses": {"200": json_response("The stored document", STORED_CUSTOMER_SCHEMA)},
    }, access=sources("customers", roles=READERS))
