"""Cloud and generic CTI events over HTTP (the voice channel's native formats).

- ``POST /v1/channels/voice/amazon-connect``: one EventBridge "Amazon Connect Contact Event"
  (:mod:`adapters.amazon_connect`), authenticated per source with an API key (an EventBridge
  API destination's connection sends it as a header) or a Standard Webhooks signature.
  Events are stored under ``<source>.amazon-connect``.
- ``POST /v1/channels/voice/events``: the generic CTI JSON (:mod:`adapters.cti_webhook`), one
  event or a batch, **signed** with Standard Webhooks by a source whose ``auth`` is
  ``webhook`` (API keys are refused here). Events are stored under ``<source>`` or
  ``<source>.<system>``.

A 2xx means committed (201 when the one event is new, 200 for a duplicate or a batch); bad
payloads are 4xx problem+json naming the field; the AMI adapter is no route (it is a client
the app runs, see :mod:`adapters.ami_client`).
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from adapters import amazon_connect, cti_webhook
from gateway import keys
from gateway.auth import source_may_post
from gateway.errors import Forbidden, UnsupportedMediaType, ValidationFailed
from gateway.events.model import check_event, decode_json
from gateway.events.sink import IngestResult
from gateway.openapi import ApiRegistry, add_route, json_response
from gateway.views.access import Principal, require_source, sources

JSON = "application/json"
AMAZON_CONNECT_SUFFIX = "amazon-connect"

RESULT_SCHEMA = {"$ref": "#/components/schemas/IngestResult"}
_RESULT = {
    "type": "object", "required": ["status", "source_event_id"],
    "properties": {"status": {"enum": ["accepted", "duplicate", "rejected"]}, "source_event_id": {"type": "string"},
                   "event_id": {"type": "string"}, "interaction_id": {"type": "string"},
                   "field": {"type": "string"}, "message": {"type": "string"}},
}
BATCH_SCHEMA = {
    "type": "object", "required": ["results"],
    "properties": {"results": {"type": "array", "items": RESULT_SCHEMA}, "accepted": {"type": "integer"},
                   "duplicate": {"type": "integer"}, "rejected": {"type": "integer"}},
}
IGNORED_SCHEMA = {
    "type": "object", "required": ["status", "reason"],
    "properties": {"status": {"const": "ignored"}, "reason": {"type": "string"}},
}


def _respond(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: msgspec.json.encode(o).decode())


def _require_json(request: web.Request) -> None:
    if request.content_type != JSON:
        raise UnsupportedMediaType(f"Content-Type {request.content_type or '(none)'} is not accepted; use {JSON}",
                                   errors=[{"field": "Content-Type", "message": "unsupported"}])


def _may_post(principal: Principal, source: str) -> None:
    assert principal.source is not None
    why = source_may_post(principal.source, source, "voice")
    if why:
        raise Forbidden(why, errors=[{"field": "source", "message": why}])


def _single(r: IngestResult) -> web.Response:
    if r.status == "rejected":
        raise ValidationFailed.field(r.field or "body", r.message or "rejected")
    return _respond(r.as_dict(), status=201 if r.status == "accepted" else 200)


async def post_amazon_connect(request: web.Request) -> web.Response:
    body = await request.read()
    principal = await require_source(request, "events", body)
    _require_json(request)
    source = f"{principal.name}.{AMAZON_CONNECT_SUFFIX}"
    _may_post(principal, source)
    events = amazon_connect.parse(decode_json(body), source=source)
    if not events:
        return _respond({"status": "ignored", "reason": "no contact-history event for this event type or channel"})
    for e in events:
        check_event(e)
    results = await request.app[keys.INGEST].submit(events)
    return _single(results[0])


async def post_cti_events(request: web.Request) -> web.Response:
    body = await request.read()
    sources = request.app[keys.SETTINGS].sources
    signed = [name for name, s in sources.items() if s.auth == "webhook"]
    principal = await require_source(request, "events", body, only=signed)
    _require_json(request)
    events, batch = cti_webhook.parse(body, source=principal.name)
    for i, e in enumerate(events):
        _may_post(principal, e.source)
        check_event(e, f"[{i}]." if batch else "")
    results = await request.app[keys.INGEST].submit(events)
    if not batch:
        return _single(results[0])
    counts = {s: sum(1 for r in results if r.status == s) for s in ("accepted", "duplicate", "rejected")}
    return _respond({"results": [r.as_dict() for r in results], **counts})


def setup_routes(app: web.Application, api: ApiRegistry) -> None:
    api.schemas["IngestResult"] = _RESULT
    components = msgspec.json.schema_components([cti_webhook.CtiEvent],
                                                ref_template="#/components/schemas/{name}")[1]
    api.schemas.update(components)
    api.security_schemes.update({
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "standardWebhooks": {"type": "apiKey", "in": "header", "name": "webhook-signature",
                             "description": "Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature"},
    })
    add_route(app, api, "POST", "/v1/channels/voice/amazon-connect", post_amazon_connect, {
        "operationId": "postAmazonConnectContactEvent", "tags": ["voice"],
        "summary": "One Amazon Connect contact event (EventBridge), as the contact history needs it",
        "security": [{"apiKey": []}, {"standardWebhooks": []}],
        "requestBody": {"required": True, "content": {JSON: {"schema": {
            "type": "object", "required": ["id", "detail-type", "time", "detail"],
            "description": "EventBridge event; keys are read case-insensitively",
            "properties": {"id": {"type": "string"}, "detail-type": {"const": amazon_connect.DETAIL_TYPE},
                           "time": {"type": "string", "format": "date-time"},
                           "detail": {"type": "object", "required": ["eventType", "contactId"]}},
        }}}},
        "responses": {"201": json_response("Accepted: committed", RESULT_SCHEMA),
                      "200": json_response("A duplicate, or an event type the history does not keep",
                                           {"oneOf": [RESULT_SCHEMA, IGNORED_SCHEMA]})},
    }, access=sources("events"))
    ref = {"$ref": "#/components/schemas/CtiEvent"}
    add_route(app, api, "POST", "/v1/channels/voice/events", post_cti_events, {
        "operationId": "postCtiEvents", "tags": ["voice"],
        "summary": "Generic CTI events (one or a batch), signed with Standard Webhooks",
        "security": [{"standardWebhooks": []}],
        "requestBody": {"required": True, "content": {JSON: {"schema": {
            "oneOf": [ref, {"type": "array", "items": ref, "minItems": 1,
                            "maxItems": cti_webhook.MAX_BATCH}]}}}},
        "responses": {"201": json_response("Accepted: committed", RESULT_SCHEMA),
                      "200": json_response("A duplicate, or a batch's per-event results",
                                           {"oneOf": [RESULT_SCHEMA, BATCH_SCHEMA]})},
    }, access=sources("events"))
