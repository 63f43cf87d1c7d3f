"""Canonical ingest and the contact-history read API.

- ``POST /v1/events``: one event, a JSON array (≤ 1,000), CloudEvents structured, batch or binary mode.
- ``GET /v1/schema/contact-event.json``: the JSON Schema of a posted event.
- ``GET /v1/customers/{customer_no}/interactions``: a customer's interactions, newest first, keyset pages.
- ``GET /v1/interactions/{id}``: one interaction with its events and link history.
- ``POST /v1/interactions/{id}/link`` / ``…/unlink``: manual linking, audited.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Any

import msgspec
from aiohttp import web

from gateway import keys
from gateway.auth import source_may_post
from gateway.db.pool import fetch
from gateway.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from gateway.events import cloudevents, links, store
from gateway.events.model import (
    MAX_BATCH,
    ContactEvent,
    check_event,
    decode_event,
    decode_json,
    decode_plain,
    field_from_msgspec,
    json_schema,
)
from gateway.events.sink import IngestResult
from gateway.middleware import request_id_of
from gateway.openapi import ApiRegistry, add_route, json_response
from gateway.validate import aware_time
from gateway.views.access import PUBLIC, READERS, Principal, require_reader, require_source, sources

JSON = "application/json"
CE_JSON = "application/cloudevents+json"
CE_BATCH = "application/cloudevents-batch+json"
MAX_PAGE = 200
DEFAULT_PAGE = 50


def _respond(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type=JSON)


def _reject(exc: ValidationFailed, source_event_id: str = "") -> IngestResult:
    first = exc.errors[0]
    return IngestResult("rejected", source_event_id, field=first["field"], message=first["message"])


def _sid(obj: Any, key: str) -> str:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) else ""


def _authorise(principal: Principal, event: ContactEvent, prefix: str) -> None:
    assert principal.source is not None
    why = source_may_post(principal.source, event.source, event.channel)
    if why:
        field = "channel" if "channel" in why else "source"
        raise ValidationFailed.field(prefix + field, why)


async def post_events(request: web.Request) -> web.Response:
    body = await request.read()
    principal = await require_source(request, "events", body)
    ctype = request.content_type
    binary = "ce-specversion" in request.headers
    if ctype not in (JSON, CE_JSON, CE_BATCH):
        raise UnsupportedMediaType(f"Content-Type {ctype or '(none)'} is not accepted; use {JSON}, {CE_JSON} "
                                   f"or {CE_BATCH}", errors=[{"field": "Content-Type", "message": "unsupported"}])
    is_ce = ctype in (CE_JSON, CE_BATCH)
    plain = ctype == JSON and not binary
    # plain JSON is decoded straight into events; CloudEvents are mapped from decoded objects
    parsed: Any = decode_plain(body) if plain else decode_json(body)
    batch = isinstance(parsed, list) and not binary
    if ctype == CE_BATCH and not batch:
        raise ValidationFailed.field("body", "a CloudEvents batch is a JSON array")
    if batch and len(parsed) > MAX_BATCH:
        raise PayloadTooLarge(f"at most {MAX_BATCH} events per request (got {len(parsed)})",
                              errors=[{"field": "body", "message": f"more than {MAX_BATCH} events"}])
    if batch and not parsed:
        raise ValidationFailed.field("body", "an empty batch")
    items = parsed if batch else [parsed]

    events: list[ContactEvent] = []
    slots: list[IngestResult | int] = []
    for i, obj in enumerate(items):
        prefix = f"[{i}]." if batch else ""
        try:
            if binary:
                event = cloudevents.from_binary(request.headers, obj)
            elif is_ce:
                event = cloudevents.from_cloudevent(obj, prefix)
            elif isinstance(obj, msgspec.Raw):
                event = decode_event(obj, prefix)
            elif batch:
                event = check_event(obj, prefix)
            else:
                event = obj  # checked by decode_plain
            _authorise(principal, event, prefix)
        except ValidationFailed as exc:
            if not batch:
                if exc.errors[0]["field"].endswith(("source", "channel")) and "may not post" in exc.errors[0][
                        "message"]:
                    raise Forbidden(exc.errors[0]["message"], errors=exc.errors) from None
                raise
            raw = decode_json(obj) if isinstance(obj, msgspec.Raw) else obj
            slots.append(_reject(exc, _sid(raw, "id" if is_ce else "source_event_id")))
            continue
        slots.append(len(events))
        events.append(event)

    # plain JSON carries U+0000 only escaped: without that escape in the body no event holds one
    nul_free = plain and b"\\u0000" not in body
    results = await request.app[keys.INGEST].submit(events, nul_free=nul_free) if events else []
    ordered = [results[s] if isinstance(s, int) else s for s in slots]
    if not batch:
        r = ordered[0]
        if r.status == "rejected":
            raise ValidationFailed.field(r.field or "body", r.message or "rejected")
        return _respond(r.as_dict(), status=201 if r.status == "accepted" else 200)
    counts = {s: sum(1 for r in ordered if r.status == s) for s in ("accepted", "duplicate", "rejected")}
    return _respond({"results": [r.as_dict() for r in ordered], **counts})


async def get_schema(request: web.Request) -> web.Response:
    return web.json_response(json_schema(), content_type="application/schema+json")


# -- reads ----------------------------------------------------------------------------------------------

def _iso(v: dt.datetime | None) -> str | None:
    return v.isoformat() if v else None


def interaction_json(i: store.InteractionRow, customer_no: str | None = None) -> dict[str, Any]:
    out = {
        "id": str(i.id), "source": i.source, "external_id": i.external_id, "kind": i.kind, "channel": i.channel,
        "customer_no": customer_no, "identification": i.identification,
        "status": i.status, "started_at": _iso(i.started_at), "answered_at": _iso(i.answered_at),
        "ended_at": _iso(i.ended_at), "last_event_at": _iso(i.last_event_at),
        "handle_seconds": i.handle_seconds, "talk_seconds": i.talk_seconds, "hold_seconds": i.hold_seconds,
        "agent_id": i.agent_id, "queue": i.queue, "direction": i.direction, "subject": i.subject,
        "outcome": i.outcome, "reason": i.reason, "event_count": i.event_count, "last_type": i.last_type,
        "linked_by": i.linked_by,
    }
    return out


def event_json(e: store.EventRow) -> dict[str, Any]:
    return {
        "id": str(e.id), "source": e.source, "source_event_id": e.source_event_id, "channel": e.channel,
        "type": e.type, "occurred_at": _iso(e.occurred_at), "received_at": _iso(e.received_at),
        "identification": e.identification, "identifiers": e.identifiers, "agent_id": e.agent_id,
        "queue": e.queue, "direction": e.direction, "subject": e.subject, "outcome": e.outcome,
        "reason": e.reason, "attributes": e.attributes,
    }


def encode_cursor(i: store.InteractionRow) -> str:
    raw = f"{i.started_at.isoformat()}|{i.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        ts, _, iid = raw.partition("|")
        return dt.datetime.fromisoformat(ts), uuid.UUID(iid)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed.field("cursor", "not a cursor this API returned") from None


def _time_param(request: web.Request, name: str) -> dt.datetime | None:
    text = request.query.get(name)
    return aware_time(text, name) if text else None


def _limit(request: web.Request) -> int:
    text = request.query.get("limit", str(DEFAULT_PAGE))
    try:
        limit = int(text)
    except ValueError:
        raise ValidationFailed.field("limit", "not an integer") from None
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed.field("limit", f"must be between 1 and {MAX_PAGE}")
    return limit


def _channels(request: web.Request) -> list[str] | None:
    from gateway.events.types import CHANNELS

    values = [c for v in request.query.getall("channel", []) for c in v.split(",") if c]
    for c in values:
        if c not in CHANNELS:
            raise ValidationFailed.field("channel", f"unknown channel {c!r}")
    return values or None


_CUSTOMER_NOS = "SELECT id, customer_no FROM customers WHERE id = ANY($1::bigint[])"


async def list_customer_interactions(request: web.Request) -> web.Response:
    await require_reader(request, "read")
    customer_no = request.match_info["customer_no"]
    limit = _limit(request)
    cursor = request.query.get("cursor")
    before = decode_cursor(cursor) if cursor else None
    channels = _channels(request)
    since, until = _time_param(request, "since"), _time_param(request, "until")
    async with request.app[keys.DB].acquire() as conn:
        customer_id, rows = await store.timeline_by_customer_no(conn, customer_no, before=before,
                                                                channels=channels, since=since, until=until,
                                                                limit=limit + 1)
    if customer_id is None:
        raise NotFound(f"no customer {customer_no!r}")
    page, more = rows[:limit], len(rows) > limit
    return _respond({
        "items": [interaction_json(i, customer_no) for i in page],
        "next_cursor": encode_cursor(page[-1]) if more else None,
    })


def _interaction_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["interaction_id"])
    except ValueError:
        raise NotFound("no such interaction") from None


async def get_interaction(request: web.Request) -> web.Response:
    await require_reader(request, "read")
    iid = _interaction_id(request)
    limit = _limit(request) if "limit" in request.query else MAX_PAGE
    async with request.app[keys.DB].acquire() as conn:
        interaction = await store.get_interaction(conn, iid)
        if interaction is None:
            raise NotFound("no such interaction")
        events = await store.list_interaction_events(conn, interaction, limit)
        links = await store.list_link_history(conn, iid)
        ids = [c for c in (interaction.customer_id, *interaction.candidates) if c is not None]
        numbers = {r["id"]: r["customer_no"] for r in await fetch(conn, "customers.nos_by_id", _CUSTOMER_NOS, ids)}
    body = interaction_json(interaction, numbers.get(interaction.customer_id) if interaction.customer_id else None)
    body["candidates"] = [numbers[c] for c in interaction.candidates if c in numbers]
    body["events"] = [event_json(e) for e in events]
    body["links"] = [{"at": _iso(ln.at), "action": ln.action, "customer_no": numbers.get(ln.customer_id)
                      if ln.customer_id else None, "actor": ln.actor, "reason": ln.reason} for ln in links]
    return _respond(body)


class _LinkBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: str
    customer_no: str | None = None


async def _link_body(request: web.Request, need_customer: bool) -> _LinkBody:
    raw = await request.read()
    try:
        body = msgspec.json.decode(raw, type=_LinkBody)
    except msgspec.ValidationError as exc:
        field, message = field_from_msgspec(str(exc))
        raise ValidationFailed.field(field or "body", message) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}", errors=[{"field": "body", "message": "invalid JSON"}]) from None
    if not body.reason.strip() or len(body.reason) > 200:
        raise ValidationFailed.field("reason", "a reason of 1 to 200 characters is required")
    if need_customer and not body.customer_no:
        raise ValidationFailed.field("customer_no", "required")
    return body


async def link_interaction(request: web.Request) -> web.Response:
    principal = await require_reader(request, "link")
    iid = _interaction_id(request)
    body = await _link_body(request, need_customer=True)
    return await _set_link(request, principal, iid, body.customer_no, body.reason)


async def unlink_interaction(request: web.Request) -> web.Response:
    principal = await require_reader(request, "link")
    iid = _interaction_id(request)
    body = await _link_body(request, need_customer=False)
    return await _set_link(request, principal, iid, None, body.reason)


async def _set_link(request: web.Request, principal: Principal, iid: uuid.UUID, customer_no: str | None,
                    reason: str) -> web.Response:
    change = await links.set_link(request.app[keys.DB], iid, actor=principal.actor, role=principal.role,
                                  reason=reason, customer_no=customer_no, request_id=request_id_of(request))
    return _respond(interaction_json(change.after, customer_no))


# -- OpenAPI -------------------------------------------------------------------------------------------

RESULT_SCHEMA = {
    "type": "object", "required": ["status", "source_event_id"],
    "properties": {
        "status": {"enum": ["accepted", "duplicate", "rejected"]}, "source_event_id": {"type": "string"},
        "event_id": {"type": "string"}, "interaction_id": {"type": "string"},
        "field": {"type": "string"}, "message": {"type": "string"},
    },
}
BATCH_SCHEMA = {
    "type": "object", "required": ["results", "accepted", "duplicate", "rejected"],
    "properties": {"results": {"type": "array", "items": RESULT_SCHEMA}, "accepted": {"type": "integer"},
                   "duplicate": {"type": "integer"}, "rejected": {"type": "integer"}},
}
INTERACTION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["id", "channel", "kind", "status", "started_at"],
    "properties": {
        "id": {"type": "string", "format": "uuid"}, "channel": {"type": "string"}, "kind": {"type": "string"},
        "status": {"type": "string"}, "started_at": {"type": "string", "format": "date-time"},
        "customer_no": {"type": ["string", "null"]}, "identification": {"type": "string"},
    },
}
PAGE_SCHEMA = {
    "type": "object", "required": ["items", "next_cursor"],
    "properties": {"items": {"type": "array", "items": INTERACTION_SCHEMA},
                   "next_cursor": {"type": ["string", "null"]}},
}
_SECURITY = [{"apiKey": []}, {"bearer": []}]
_CE_REF = {"$ref": "#/components/schemas/ContactEvent"}
_PAGE_PARAMS = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
    {"name": "channel", "in": "query", "schema": {"type": "string"}},
    {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
    {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
]
_LINK_BODY = {"type": "object", "required": ["reason"],
              "properties": {"reason": {"type": "string"}, "customer_no": {"type": "string"}}}


def setup_routes(app: web.Application, api: ApiRegistry) -> None:
    schema = json_schema()
    api.schemas["ContactEvent"] = schema["$defs"]["ContactEvent"]
    api.schemas["Identifier"] = schema["$defs"]["Identifier"]
    api.security_schemes.update({
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "bearer": {"type": "http", "scheme": "bearer"},
    })
    add_route(app, api, "POST", "/v1/events", post_events, {
        "operationId": "postEvents", "summary": "Ingest one event, a batch, or CloudEvents", "tags": ["ingest"],
        "security": _SECURITY,
        "requestBody": {"required": True, "content": {
            JSON: {"schema": {"oneOf": [_CE_REF, {"type": "array", "items": _CE_REF, "maxItems": MAX_BATCH}]}},
            CE_JSON: {"schema": {"type": "object"}},
            CE_BATCH: {"schema": {"type": "array", "items": {"type": "object"}}},
        }},
        "responses": {"201": json_response("Accepted: committed", RESULT_SCHEMA),
                      "200": json_response("A duplicate of a stored event, or a batch's per-event results",
                                           {"oneOf": [RESULT_SCHEMA, BATCH_SCHEMA]})},
    }, access=sources("events"))
    add_route(app, api, "GET", "/v1/schema/contact-event.json", get_schema, {
        "operationId": "contactEventSchema", "summary": "JSON Schema of the canonical contact event",
        "tags": ["ingest"],
        "responses": {"200": {"description": "JSON Schema",
                              "content": {"application/schema+json": {"schema": {"type": "object"}}}}},
    }, access=PUBLIC)
    add_route(app, api, "GET", "/v1/customers/{customer_no}/interactions", list_customer_interactions, {
        "operationId": "listCustomerInteractions", "summary": "A customer's interactions, newest first",
        "tags": ["history"], "security": _SECURITY,
        "parameters": [{"name": "customer_no", "in": "path", "required": True, "schema": {"type": "string"}},
                       *_PAGE_PARAMS],
        "responses": {"200": json_response("A page of interactions", PAGE_SCHEMA)},
    }, access=sources("read", roles=READERS))
    iid_param = {"name": "interaction_id", "in": "path", "required": True,
                 "schema": {"type": "string", "format": "uuid"}}
    add_route(app, api, "GET", "/v1/interactions/{interaction_id}", get_interaction, {
        "operationId": "getInteraction", "summary": "One interaction with its events", "tags": ["history"],
        "security": _SECURITY, "parameters": [iid_param],
        "responses": {"200": json_response("The interaction", INTERACTION_SCHEMA)},
    }, access=sources("read", roles=READERS))
    for path, handler, op, summary in (
        ("/v1/interactions/{interaction_id}/link", link_interaction, "linkInteraction", "Link to a customer"),
        ("/v1/interactions/{interaction_id}/unlink", unlink_interaction, "unlinkInteraction",
         "Unlink from its customer"),
    ):
        add_route(app, api, "POST", path, handler, {
            "operationId": op, "summary": summary + " (audited)", "tags": ["history"], "security": _SECURITY,
            "parameters": [iid_param],
            "requestBody": {"required": True, "content": {JSON: {"schema": _LINK_BODY}}},
            "responses": {"200": json_response("The interaction after the change", INTERACTION_SCHEMA)},
        }, access=sources("link", roles=READERS))
